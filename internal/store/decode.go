package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Decode decodes a state document into a new Data, as json.Unmarshal
// does. The documents Encode writes (and any JSON of the same shape, laid
// out with any whitespace) are read by a decoder of their own, several
// times faster: every process on an operation decodes a snapshot each time
// the journal is compacted, under the operation's lock. Anything else (an
// escape in a string, a null in a list, a key in another case, a key twice, a number
// that is not a plain integer) goes to encoding/json, which decides:
// FuzzDecode checks that the two agree.
func Decode(b []byte) (*Data, error) {
	d := new(Data)
	p := Reader{b: b}
	if p.Data(d) && p.End() {
		return d, nil
	}
	d = new(Data)
	if err := json.Unmarshal(b, d); err != nil {
		return nil, err
	}
	return d, nil
}

// A Reader reads the JSON that Decode takes the fast way: a state
// document, or a value with the shapes of one inside (record bodies of the
// ledger package). Each method reads one value and reports false for
// anything else, after which the Reader is spent and the caller starts
// over with encoding/json.
type Reader struct{ b []byte }

// NewReader returns a Reader of b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// space skips whitespace.
func (p *Reader) space() {
	i := 0
	for i < len(p.b) && p.b[i] <= ' ' && (p.b[i] == ' ' || p.b[i] == '\n' || p.b[i] == '\t' || p.b[i] == '\r') {
		i++
	}
	p.b = p.b[i:]
}

// expect reads c, after any whitespace.
func (p *Reader) expect(c byte) bool {
	p.space()
	if len(p.b) == 0 || p.b[0] != c {
		return false
	}
	p.b = p.b[1:]
	return true
}

// End reports whether nothing but whitespace is left.
func (p *Reader) End() bool {
	p.space()
	return len(p.b) == 0
}

// Object reads an object whose keys are among keys, each at most once,
// calling member with each key read: member reads its value. A null value
// is not given to member: the field stays as it is, which is what
// encoding/json makes of null only for a field still at its zero value.
// So the value read into must be new, as it is for every caller; and a
// key with no case in member is caught only when its value is not null.
func (p *Reader) Object(keys []string, member func(string) bool) bool {
	if !p.expect('{') {
		return false
	}
	if p.expect('}') {
		return true
	}
	var seen uint64
	next := 0 // Encode writes the keys in order: try the one after the last
	for {
		k, ok := p.rawStr()
		if !ok || !p.expect(':') {
			return false
		}
		n := next
		if n >= len(keys) || keys[n] != string(k) {
			n = 0
			for n < len(keys) && keys[n] != string(k) {
				n++
			}
		}
		if n == len(keys) || seen&(1<<n) != 0 {
			return false
		}
		seen |= 1 << n
		next = n + 1
		// null leaves a field of a new value as it is, zero, as it does
		// for encoding/json.
		if !p.null() && !member(keys[n]) {
			return false
		}
		if p.expect('}') {
			return true
		}
		if !p.expect(',') {
			return false
		}
	}
}

// null reads null, if it is next.
func (p *Reader) null() bool {
	p.space()
	if !bytes.HasPrefix(p.b, []byte("null")) {
		return false
	}
	p.b = p.b[4:]
	return true
}

// Array reads an array, calling elem to read each element.
func (p *Reader) Array(elem func() bool) bool {
	if !p.expect('[') {
		return false
	}
	if p.expect(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if p.expect(']') {
			return true
		}
		if !p.expect(',') {
			return false
		}
	}
}

// rawStr reads a string without escapes or control characters, in
// valid UTF-8: encoding/json reads such a string as its bytes.
func (p *Reader) rawStr() ([]byte, bool) {
	if !p.expect('"') {
		return nil, false
	}
	end := bytes.IndexByte(p.b, '"')
	if end < 0 {
		return nil, false
	}
	s := p.b[:end]
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	ascii := true
	for _, c := range s {
		if c-0x20 >= 0x60 { // below 0x20, or not ASCII
			if c < 0x20 {
				return nil, false
			}
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return nil, false
	}
	p.b = p.b[end+1:]
	return s, true
}

// Str reads a string into v: one without escapes or control characters,
// in valid UTF-8.
func (p *Reader) Str(v *string) bool {
	s, ok := p.rawStr()
	*v = string(s)
	return ok
}

// strs reads an array of strings into v; [] is an empty, not a nil, list.
func (p *Reader) strs(v *[]string) bool {
	out := []string{}
	ok := p.Array(func() bool {
		var s string
		if !p.Str(&s) {
			return false
		}
		out = append(out, s)
		return true
	})
	*v = out
	return ok
}

// time reads a string as Time.UnmarshalJSON does.
func (p *Reader) time(v *Time) bool {
	s, ok := p.rawStr()
	if !ok {
		return false
	}
	if t, ok := parseUTCMillis(s); ok {
		*v = t
		return true
	}
	t, err := ParseTime(string(s))
	*v = t
	return err == nil
}

// parseUTCMillis reads a time in the form Encode writes it,
// 2006-01-02T15:04:05.000Z, to what ParseTime returns for it, without
// time.Parse, which a state of many frames calls thousands of times.
func parseUTCMillis(s []byte) (Time, bool) {
	if len(s) != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return Time{}, false
	}
	n := func(from, to int) int {
		v := 0
		for _, c := range s[from:to] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day, hour, min, sec, ms := n(0, 4), n(5, 7), n(8, 10), n(11, 13), n(14, 16), n(17, 19), n(20, 23)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 || ms < 0 {
		return Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, ms*1e6, time.UTC)
	if t.Day() != day { // 31 April, 29 February of a common year
		return Time{}, false
	}
	return Time{t}, true
}

// integer returns the text of the integer next, without fraction,
// exponent or leading zeros (a sign, if signed), and moves past it; or
// false, and does not move.
func (p *Reader) integer(signed bool) ([]byte, bool) {
	p.space()
	i := 0
	if signed && i < len(p.b) && p.b[i] == '-' {
		i++
	}
	digits := i
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == digits || i-digits > 1 && p.b[digits] == '0' || i < len(p.b) && (p.b[i] == '.' || p.b[i] == 'e' || p.b[i] == 'E') {
		return nil, false
	}
	s := p.b[:i]
	p.b = p.b[i:]
	return s, true
}

// int reads an integer that fits in an int.
func (p *Reader) int(v *int) bool {
	s, ok := p.integer(true)
	n, err := strconv.Atoi(string(s))
	*v = n
	return ok && err == nil
}

// uint64 reads a non-negative integer that fits in a uint64.
func (p *Reader) uint64(v *uint64) bool {
	s, ok := p.integer(false)
	n, err := strconv.ParseUint(string(s), 10, 64)
	*v = n
	return ok && err == nil
}

// Bool reads true or false into v.
func (p *Reader) Bool(v *bool) bool {
	p.space()
	switch {
	case bytes.HasPrefix(p.b, []byte("true")):
		*v, p.b = true, p.b[4:]
	case bytes.HasPrefix(p.b, []byte("false")):
		*v, p.b = false, p.b[5:]
	default:
		return false
	}
	return true
}

// The keys of each object of a state document: the JSON names of the
// fields of Data and of the types in it (TestDecodeKnowsEveryField).
var (
	dataKeys = []string{"operationId", "initiatorId", "description", "startTime", "operationState", "aborted", "lastHeartbeat",
		"callFrames", "tempResources", "participants", "detectionTimestamp", "removalTimestamp", "failure", "dartParticipant", "journalRev", "idempotencyKeys"}
	frameKeys       = []string{"participantId", "callId", "pid", "host", "startTime", "lastHeartbeat", "state", "description", "resources", "failOnCrash"}
	tempKeys        = []string{"path", "owner", "registeredAt", "participantId", "host", "registeredVia"}
	participantKeys = []string{"participantId", "pid", "host", "sessions", "joinedAt", "lastHeartbeat", "state", "heartbeatIntervalMs", "staleThresholdMs", "remote"}
	failureKeys     = []string{"failedAt", "reason", "participantId", "crashedCallIds", "coordinator"}
)

// Data reads a state document into d, which must be new.
func (p *Reader) Data(d *Data) bool {
	return p.Object(dataKeys, func(k string) bool {
		switch k {
		case "operationId":
			return p.Str(&d.OperationID)
		case "initiatorId":
			return p.Str(&d.InitiatorID)
		case "description":
			return p.Str(&d.Description)
		case "startTime":
			return p.time(&d.StartTime)
		case "operationState":
			return p.Str(&d.OperationState)
		case "aborted":
			return p.Bool(&d.Aborted)
		case "lastHeartbeat":
			return p.time(&d.LastHeartbeat)
		case "callFrames":
			d.CallFrames = []CallFrame{}
			return p.Array(func() bool {
				d.CallFrames = append(d.CallFrames, CallFrame{})
				return p.Frame(&d.CallFrames[len(d.CallFrames)-1])
			})
		case "tempResources":
			d.TempResources = []TempResource{}
			return p.Array(func() bool {
				d.TempResources = append(d.TempResources, TempResource{})
				return p.Temp(&d.TempResources[len(d.TempResources)-1])
			})
		case "participants":
			d.Participants = []Participant{}
			return p.Array(func() bool {
				d.Participants = append(d.Participants, Participant{})
				return p.Participant(&d.Participants[len(d.Participants)-1])
			})
		case "detectionTimestamp":
			d.DetectionTimestamp = new(Time)
			return p.time(d.DetectionTimestamp)
		case "removalTimestamp":
			d.RemovalTimestamp = new(Time)
			return p.time(d.RemovalTimestamp)
		case "failure":
			d.Failure = new(Failure)
			return p.failure(d.Failure)
		case "dartParticipant":
			return p.Str(&d.DartParticipant)
		case "journalRev":
			return p.uint64(&d.JournalRev)
		case "idempotencyKeys":
			return p.keys(d)
		}
		return false // a key of dataKeys without its case here
	})
}

// Frame reads a call frame into f, which must be new.
func (p *Reader) Frame(f *CallFrame) bool {
	return p.Object(frameKeys, func(k string) bool {
		switch k {
		case "participantId":
			return p.Str(&f.ParticipantID)
		case "callId":
			return p.Str(&f.CallID)
		case "pid":
			return p.int(&f.PID)
		case "host":
			return p.Str(&f.Host)
		case "startTime":
			return p.time(&f.StartTime)
		case "lastHeartbeat":
			return p.time(&f.LastHeartbeat)
		case "state":
			return p.Str(&f.State)
		case "description":
			return p.Str(&f.Description)
		case "resources":
			return p.strs(&f.Resources)
		case "failOnCrash":
			return p.Bool(&f.FailOnCrash)
		}
		return false
	})
}

// Temp reads a temporary resource into r, which must be new.
func (p *Reader) Temp(r *TempResource) bool {
	return p.Object(tempKeys, func(k string) bool {
		switch k {
		case "path":
			return p.Str(&r.Path)
		case "owner":
			return p.int(&r.Owner)
		case "registeredAt":
			return p.time(&r.RegisteredAt)
		case "participantId":
			return p.Str(&r.ParticipantID)
		case "host":
			return p.Str(&r.Host)
		case "registeredVia":
			return p.Str(&r.RegisteredVia)
		}
		return false
	})
}

// Participant reads a participant record into pt, which must be new.
func (p *Reader) Participant(pt *Participant) bool {
	return p.Object(participantKeys, func(k string) bool {
		switch k {
		case "participantId":
			return p.Str(&pt.ParticipantID)
		case "pid":
			return p.int(&pt.PID)
		case "host":
			return p.Str(&pt.Host)
		case "sessions":
			return p.int(&pt.Sessions)
		case "joinedAt":
			return p.time(&pt.JoinedAt)
		case "lastHeartbeat":
			return p.time(&pt.LastHeartbeat)
		case "state":
			return p.Str(&pt.State)
		case "heartbeatIntervalMs":
			return p.int(&pt.HeartbeatIntervalMs)
		case "staleThresholdMs":
			return p.int(&pt.StaleThresholdMs)
		case "remote":
			return p.Bool(&pt.Remote)
		}
		return false
	})
}

func (p *Reader) failure(f *Failure) bool {
	return p.Object(failureKeys, func(k string) bool {
		switch k {
		case "failedAt":
			return p.time(&f.FailedAt)
		case "reason":
			return p.Str(&f.Reason)
		case "participantId":
			return p.Str(&f.ParticipantID)
		case "crashedCallIds":
			return p.strs(&f.CrashedCallIDs)
		case "coordinator":
			return p.Str(&f.Coordinator)
		}
		return false
	})
}

// keys reads idempotencyKeys: participant keys, each once, to lists of
// request keys.
func (p *Reader) keys(d *Data) bool {
	d.Keys = map[string][]string{}
	if !p.expect('{') {
		return false
	}
	if p.expect('}') {
		return true
	}
	for {
		var by string
		if !p.Str(&by) || !p.expect(':') {
			return false
		}
		if _, dup := d.Keys[by]; dup {
			return false
		}
		var ks []string
		if !p.strs(&ks) {
			return false
		}
		d.Keys[by] = ks
		if p.expect('}') {
			return true
		}
		if !p.expect(',') {
			return false
		}
	}
}
