package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// A record of an operation's journal holds the edits that one change made
// to the state, as plain ops: replace the scalar fields, upsert a
// participant, a frame or a temp resource, remove a frame or a temp
// resource. Following the journal is applying its ops, in order; the rules
// that decided them never run again, so a record means the same to every
// version of the library that reads it. The log lines of the change ride
// along in the record (journal.Record.Log).

// op is one edit of the state.
type op struct {
	Op          string              `json:"op"`
	Data        *store.Data         `json:"data,omitempty"`        // opInit: the whole state
	Head        *store.Data         `json:"head,omitempty"`        // opHead: the scalar fields
	Participant *store.Participant  `json:"participant,omitempty"` // opParticipant
	Frame       *store.CallFrame    `json:"frame,omitempty"`       // opFrame
	Temp        *store.TempResource `json:"temp,omitempty"`        // opTemp
	Key         string              `json:"key,omitempty"`         // opUnframe: the call id; opUntemp: the path
}

// The ops.
const (
	opInit        = "init"        // the state becomes Data
	opHead        = "head"        // the scalar fields become Head's
	opParticipant = "participant" // upsert Participant by process
	opFrame       = "frame"       // upsert Frame by call id, new ones last
	opUnframe     = "unframe"     // remove the frame Key
	opClearFrames = "clearFrames" // remove every frame
	opTemp        = "temp"        // upsert Temp by path, new ones last
	opUntemp      = "untemp"      // remove the temp resource Key
)

// body is the Body of a record.
type body struct {
	// Routine marks a record whose ops only add, change or remove frames
	// of one participant process (a call started, ended, or failed
	// without failing the operation), or that only logs. It comes first,
	// so that a reader tells such a record from its first bytes (see
	// scanRoutine) and may leave it undecoded until it needs the frames
	// of others.
	Routine bool `json:"routine,omitempty"`
	Ops     []op `json:"ops"`
	// Key is the idempotency key of the change, when its client gave one,
	// and By the Key of the participant that sent it.
	Key string `json:"key,omitempty"`
	By  string `json:"by,omitempty"`
}

// diff returns the ops that turn old into cur. Rules only append frames,
// temp resources and participants, remove them, or change them in place,
// so a walk of both lists in step finds every edit.
func diff(old, cur *store.Data) []op {
	if old == nil {
		return []op{{Op: opInit, Data: cur}}
	}
	var ops []op
	if !sameHead(old, cur) {
		ops = append(ops, op{Op: opHead, Head: head(cur)})
	}
	for i := range cur.Participants {
		p := &cur.Participants[i]
		if i >= len(old.Participants) || old.Participants[i] != *p {
			ops = append(ops, op{Op: opParticipant, Participant: p})
		}
	}
	ops = diffFrames(ops, old.CallFrames, cur.CallFrames)
	return diffTemps(ops, old.TempResources, cur.TempResources)
}

func diffFrames(ops []op, old, cur []store.CallFrame) []op {
	if len(cur) == 0 && len(old) > 1 {
		return append(ops, op{Op: opClearFrames})
	}
	j := 0
	for i := range old {
		if j < len(cur) && cur[j].CallID == old[i].CallID {
			if !cur[j].Equal(&old[i]) {
				ops = append(ops, op{Op: opFrame, Frame: &cur[j]})
			}
			j++
			continue
		}
		ops = append(ops, op{Op: opUnframe, Key: old[i].CallID})
	}
	for ; j < len(cur); j++ {
		ops = append(ops, op{Op: opFrame, Frame: &cur[j]})
	}
	return ops
}

func diffTemps(ops []op, old, cur []store.TempResource) []op {
	j := 0
	for i := range old {
		if j < len(cur) && cur[j].Path == old[i].Path {
			if cur[j] != old[i] {
				ops = append(ops, op{Op: opTemp, Temp: &cur[j]})
			}
			j++
			continue
		}
		ops = append(ops, op{Op: opUntemp, Key: old[i].Path})
	}
	for ; j < len(cur); j++ {
		ops = append(ops, op{Op: opTemp, Temp: &cur[j]})
	}
	return ops
}

// head returns the scalar fields of d.
func head(d *store.Data) *store.Data {
	h := *d
	h.CallFrames, h.TempResources, h.Participants, h.Keys = nil, nil, nil, nil
	return &h
}

func sameHead(a, b *store.Data) bool {
	return a.OperationID == b.OperationID && a.InitiatorID == b.InitiatorID &&
		a.Description == b.Description && a.StartTime.Equal(b.StartTime.Time) &&
		a.OperationState == b.OperationState && a.Aborted == b.Aborted &&
		a.LastHeartbeat.Equal(b.LastHeartbeat.Time) && a.DartParticipant == b.DartParticipant &&
		sameTime(a.DetectionTimestamp, b.DetectionTimestamp) &&
		sameTime(a.RemovalTimestamp, b.RemovalTimestamp) &&
		sameFailure(a.Failure, b.Failure)
}

func sameTime(a, b *store.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b.Time)
}

func sameFailure(a, b *store.Failure) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.FailedAt.Equal(b.FailedAt.Time) && a.Reason == b.Reason &&
		a.ParticipantID == b.ParticipantID && a.Coordinator == b.Coordinator &&
		slices.Equal(a.CrashedCallIDs, b.CrashedCallIDs)
}

// encodeBody returns the Body of a record of ops.
func encodeBody(routine bool, ops []op, k requestKey) ([]byte, error) {
	return json.Marshal(body{Routine: routine, Ops: ops, Key: k.key, By: k.by})
}

// routinePrefix is how the body of a routine record begins.
const routinePrefix = `{"routine":true,`

// scanRoutine reports whether a record body is routine, without decoding
// it, and returns the call ids it names (the strings of its "callId" and
// "key" fields). The mark is not taken on trust: a body is routine only if
// it begins with routinePrefix, has the form encodeBody gives it (no
// space between tokens, no escape in a string), and every "op" in it,
// whatever the case of the key (encoding/json ignores it), is "frame" or
// "unframe" (a record that only logs has none). A body that only looks
// routine still fails when it is applied, later: a hostile one cannot
// hide an abort or a failure this way, nor a call id.
func scanRoutine(body []byte) (ids []string, ok bool) {
	if !bytes.HasPrefix(body, []byte(routinePrefix)) {
		return nil, false
	}
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case ' ', '\t', '\n', '\r', '\\':
			return nil, false
		case '"':
		default:
			continue
		}
		key, n := scanString(body[i:])
		if n < 0 {
			return nil, false
		}
		i += n - 1 // at the closing quote
		if i+1 >= len(body) || body[i+1] != ':' {
			continue // a value, not a key
		}
		isOp := bytes.EqualFold(key, []byte("op"))
		isID := bytes.EqualFold(key, []byte("callId")) || bytes.EqualFold(key, []byte("key"))
		if !isOp && !isID {
			continue
		}
		v, n := scanString(body[i+2:])
		if n < 0 {
			return nil, false // not a string where one is due
		}
		i += 1 + n
		switch {
		case isOp && (string(v) == opFrame || string(v) == opUnframe):
		case isOp:
			return nil, false
		default:
			ids = append(ids, string(v))
		}
	}
	return ids, true
}

// scanString reads the JSON string without escapes that b begins with and
// returns its contents and its length with the quotes, or -1 if b does
// not begin with one.
func scanString(b []byte) ([]byte, int) {
	if len(b) == 0 || b[0] != '"' {
		return nil, -1
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 || bytes.IndexByte(b[1:1+end], '\\') >= 0 {
		return nil, -1
	}
	return b[1 : 1+end], end + 2
}

// routineOps reports whether ops, applied to old, only upsert or remove
// frames of one participant process, or are none (a change that only
// logs).
func routineOps(old *store.Data, ops []op) bool {
	if old == nil {
		return false
	}
	var owner *store.CallFrame
	same := func(f *store.CallFrame) bool {
		if owner == nil {
			owner = f
		}
		return f.ParticipantID == owner.ParticipantID && f.PID == owner.PID && f.Host == owner.Host
	}
	for i := range ops {
		switch o := &ops[i]; o.Op {
		case opFrame:
			if o.Frame == nil || !same(o.Frame) {
				return false
			}
			if j := old.Frame(o.Frame.CallID); j >= 0 && !same(&old.CallFrames[j]) {
				return false
			}
		case opUnframe:
			j := old.Frame(o.Key)
			if j < 0 || !same(&old.CallFrames[j]) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// requestKey names a change that a client may send more than once: the
// idempotency key of its request and the participant that sent it. The
// zero value names none.
type requestKey struct {
	by  string // the participant's Key
	key string // the Idempotency-Key
}

// maxKeys bounds the keys Data.Keys keeps for one participant. A client
// sends a request again before it has made maxKeys changes since (one
// goroutine, before its next change), so a request sent again after any
// number of other clients' changes, a compaction of the journal and a
// restart of the server is still found.
const maxKeys = 64

// remember adds k, if any, to the keys of d, which the caller owns.
func remember(d *store.Data, k requestKey) {
	if k.key == "" {
		return
	}
	if d.Keys == nil {
		d.Keys = make(map[string][]string)
	}
	ks := d.Keys[k.by]
	if len(ks) >= maxKeys {
		ks = slices.Clone(ks[len(ks)-maxKeys+1:])
	}
	d.Keys[k.by] = append(ks, k.key)
}

// made reports whether d holds the change named by k.
func made(d *store.Data, k requestKey) bool {
	return k.key != "" && d != nil && slices.Contains(d.Keys[k.by], k.key)
}

// apply applies the ops of a record body to d, which it may modify (the
// caller owns it), and returns the state after them. A nil d is the state
// before the first record.
func apply(d *store.Data, raw []byte) (*store.Data, error) {
	b, err := decodeBody(raw)
	if err != nil {
		return nil, err
	}
	for _, o := range b.Ops {
		if o.Op != opInit && d == nil {
			return nil, fmt.Errorf("op %q before the state's first record", o.Op)
		}
		if err := applyOp(d, &o); err != nil {
			return nil, err
		}
		if o.Op == opInit {
			d = o.Data
		}
	}
	if d == nil {
		return nil, fmt.Errorf("a record without the state")
	}
	remember(d, requestKey{by: b.By, key: b.Key})
	return d, nil
}

// decodeBody decodes a record body as json.Unmarshal does. The bodies
// encodeBody writes are read by store.Reader, several times faster: a
// participant applies every record it put off whenever it needs the whole
// state, under the operation's lock when it compacts, and a server or a
// viewer applies every record it reads. Anything else goes to
// encoding/json (FuzzDecodeBody checks that the two agree).
func decodeBody(raw []byte) (body, error) {
	if b, ok := readBody(raw); ok {
		return b, nil
	}
	var b body
	err := json.Unmarshal(raw, &b)
	return b, err
}

// readBody reads raw with store.Reader, and reports whether it could.
func readBody(raw []byte) (body, bool) {
	var b body
	r := store.NewReader(raw)
	ok := r.Object(bodyKeys, func(key string) bool { return b.read(r, key) }) && r.End()
	return b, ok
}

// The keys of a body and of an op, as encoding/json names their fields
// (TestDecodeBodyTakesTheFastWay).
var (
	bodyKeys = []string{"routine", "ops", "key", "by"}
	opKeys   = []string{"op", "data", "head", "participant", "frame", "temp", "key"}
)

// read reads the value of key k of a body.
func (b *body) read(r *store.Reader, k string) bool {
	switch k {
	case "routine":
		return r.Bool(&b.Routine)
	case "ops":
		b.Ops = []op{}
		return r.Array(func() bool {
			b.Ops = append(b.Ops, op{})
			o := &b.Ops[len(b.Ops)-1]
			return r.Object(opKeys, func(key string) bool { return o.read(r, key) })
		})
	case "key":
		return r.Str(&b.Key)
	case "by":
		return r.Str(&b.By)
	}
	return false
}

// read reads the value of key k of an op.
func (o *op) read(r *store.Reader, k string) bool {
	switch k {
	case "op":
		return r.Str(&o.Op)
	case "data":
		o.Data = new(store.Data)
		return r.Data(o.Data)
	case "head":
		o.Head = new(store.Data)
		return r.Data(o.Head)
	case "participant":
		o.Participant = new(store.Participant)
		return r.Participant(o.Participant)
	case "frame":
		o.Frame = new(store.CallFrame)
		return r.Frame(o.Frame)
	case "temp":
		o.Temp = new(store.TempResource)
		return r.Temp(o.Temp)
	case "key":
		return r.Str(&o.Key)
	}
	return false
}

func applyOp(d *store.Data, o *op) error {
	switch o.Op {
	case opInit:
		if o.Data == nil {
			return fmt.Errorf("op %q without data", o.Op)
		}
		normalize(o.Data)
		if fe := store.ValidateState(o.Data); fe != nil {
			return fe
		}
	case opHead:
		if o.Head == nil {
			return fmt.Errorf("op %q without head", o.Op)
		}
		h := *o.Head
		h.CallFrames, h.TempResources, h.Participants, h.Keys = d.CallFrames, d.TempResources, d.Participants, d.Keys
		if h.OperationID != d.OperationID {
			return &store.FieldError{Field: "operationId", Err: fmt.Errorf("%q changes to %q", d.OperationID, h.OperationID)}
		}
		if fe := store.ValidateState(&store.Data{OperationState: h.OperationState, StartTime: h.StartTime, InitiatorID: h.InitiatorID}); fe != nil {
			return fe
		}
		*d = h
	case opParticipant:
		p := o.Participant
		if p == nil {
			return fmt.Errorf("op %q without participant", o.Op)
		}
		if fe := store.ValidateParticipant(p); fe != nil {
			return &store.FieldError{Field: "participants." + fe.Field, Err: fe.Err}
		}
		if i := d.Participant(p.ParticipantID, p.Host, p.PID); i >= 0 {
			d.Participants[i] = *p
		} else {
			d.Participants = append(d.Participants, *p)
		}
	case opFrame:
		f := o.Frame
		if f == nil {
			return fmt.Errorf("op %q without frame", o.Op)
		}
		if fe := store.ValidateFrame(f); fe != nil {
			return &store.FieldError{Field: "callFrames." + fe.Field, Err: fe.Err}
		}
		if i := d.Frame(f.CallID); i >= 0 {
			d.CallFrames[i] = *f
		} else {
			d.CallFrames = append(d.CallFrames, *f)
		}
	case opUnframe:
		d.CallFrames = slices.DeleteFunc(d.CallFrames, func(f store.CallFrame) bool { return f.CallID == o.Key })
	case opClearFrames:
		d.CallFrames = []store.CallFrame{}
	case opTemp:
		t := o.Temp
		if t == nil || t.Path == "" {
			return &store.FieldError{Field: "tempResources.path", Err: errors.New("missing")}
		}
		if i := slices.IndexFunc(d.TempResources, func(r store.TempResource) bool { return r.Path == t.Path }); i >= 0 {
			d.TempResources[i] = *t
		} else {
			d.TempResources = append(d.TempResources, *t)
		}
	case opUntemp:
		d.TempResources = slices.DeleteFunc(d.TempResources, func(r store.TempResource) bool { return r.Path == o.Key })
	default:
		return fmt.Errorf("unknown op %q", o.Op)
	}
	return nil
}

// normalize gives a decoded state the empty lists the Dart layout writes.
func normalize(d *store.Data) {
	if d.CallFrames == nil {
		d.CallFrames = []store.CallFrame{}
	}
	if d.TempResources == nil {
		d.TempResources = []store.TempResource{}
	}
}

// fold returns the state at the end of tail, for a reader whose state was
// d (nil if it has none). A tail with a snapshot starts over from it.
func fold(d *store.Data, tail journal.Tail) (*store.Data, error) {
	if tail.Snapshot != nil {
		d = nil
		if len(tail.Snapshot) > 0 {
			s, err := decodeState(tail.Snapshot)
			if err != nil {
				return nil, err
			}
			d = s
		}
	}
	// d is shared; one copy takes every record of the tail.
	if d != nil && len(tail.Records) > 0 && tail.Snapshot == nil {
		d = d.Clone()
	}
	for _, r := range tail.Records {
		nd, err := apply(d, r.Body)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", r.Rev, err)
		}
		d = nd
	}
	return d, nil
}

// decodeState decodes and validates a state document (a snapshot, or the
// Dart ledger's operation.json).
func decodeState(b []byte) (*store.Data, error) {
	d, err := store.Decode(b)
	if err != nil {
		return nil, err
	}
	d.JournalRev = 0 // a position of the document, not of the state
	for by, ks := range d.Keys {
		if n := len(ks); n > maxKeys {
			d.Keys[by] = ks[n-maxKeys:]
		}
	}
	if fe := store.ValidateState(d); fe != nil {
		return nil, fe
	}
	normalize(d)
	return d, nil
}
