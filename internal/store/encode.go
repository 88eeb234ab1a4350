package store

import (
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encode returns d as JSON indented by two spaces, byte for byte what
// json.MarshalIndent(d, "", "  ") writes, at a fraction of its cost: a
// state with 1,000 frames is encoded on every change, so this is on the hot
// path. TestEncodeMatchesEncodingJSON keeps the two in step.
func Encode(d *Data) []byte {
	e := encoder{b: make([]byte, 0, 512+350*len(d.CallFrames))}
	e.encode(d)
	return e.b
}

// frameCache remembers the last encoding of the state of one operation and
// where each call frame is in it. Frames are most of a state file, and
// from one change to the next nearly all stay as they were: a run of
// frames equal to a run of the last encoding is copied from it in one
// piece. The frames remembered belong to a state that the Store shares and
// never modifies. The zero value is empty and ready; a frameCache is not
// safe for concurrent use.
type frameCache struct {
	prev  []CallFrame    // the frames of the last encoding
	raw   []byte         // the last encoding; not modified while here
	spans []span         // where each of prev is in raw, '{' to '}'
	byID  map[string]int // index in prev by call id, built when needed
}

type span struct{ start, end int }

// encode writes the state d into buf (whose contents do not matter; it
// must not be fc's last encoding), reusing the encodings of unchanged
// frames, and returns the encoding with the frames' spans, to hand to
// accept once written.
func (fc *frameCache) encode(d *Data, buf []byte, spans []span) ([]byte, []span) {
	if n := max(len(fc.raw)+1024, 512+350*len(d.CallFrames)); cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	e := encoder{b: buf[:0], fc: fc, spans: spans[:0]}
	e.encode(d)
	return e.b, e.spans
}

// accept makes the encoding b of frames, with their spans, the last one,
// and returns the buffers of the one before for reuse.
func (fc *frameCache) accept(frames []CallFrame, b []byte, spans []span) (oldRaw []byte, oldSpans []span) {
	oldRaw, oldSpans = fc.raw, fc.spans
	fc.prev, fc.raw, fc.spans, fc.byID = frames, b, spans, nil
	return oldRaw, oldSpans
}

// frames writes the elements of the frames array.
func (fc *frameCache) frames(e *encoder, frames []CallFrame) {
	e.spans = slices.Grow(e.spans[:0], len(frames))[:len(frames)]
	run := span{-1, -1}  // a run of reused frames not yet copied, in fc.raw
	runAt, last := 0, -1 // where the run goes in e.b; its last frame in prev
	flush := func() {
		if run.start >= 0 {
			e.b = append(e.b, fc.raw[run.start:run.end]...)
			run.start = -1
		}
	}
	next := 0 // where in prev the next frame probably is
	for i := range frames {
		f := &frames[i]
		k, seen := fc.find(f, next)
		if k < 0 {
			flush()
			e.item()
			start := len(e.b)
			e.frameBody(f)
			e.spans[i] = span{start, len(e.b)}
			next = max(next, seen)
			continue
		}
		if run.start < 0 || k != last+1 {
			flush()
			e.item()
			run, runAt = fc.spans[k], len(e.b)
			e.first = false
		}
		run.end = fc.spans[k].end
		e.spans[i] = span{runAt + fc.spans[k].start - run.start, runAt + fc.spans[k].end - run.start}
		last, next = k, k+1
	}
	flush()
}

// find returns the index in prev of a frame equal to f, or -1 and the
// index after the changed frame with f's call id, if any. It looks at next
// and a few frames after it first: frames keep their order, and a change
// adds one at the end or removes one.
func (fc *frameCache) find(f *CallFrame, next int) (k, seen int) {
	for k := next; k < min(next+4, len(fc.prev)); k++ {
		if fc.prev[k].CallID == f.CallID {
			if fc.prev[k].equal(f) {
				return k, k + 1
			}
			return -1, k + 1
		}
	}
	if next >= len(fc.prev) {
		return -1, next // a new frame at the end
	}
	if fc.byID == nil {
		fc.byID = make(map[string]int, len(fc.prev))
		for k := range fc.prev {
			fc.byID[fc.prev[k].CallID] = k
		}
	}
	if k, ok := fc.byID[f.CallID]; ok && fc.prev[k].equal(f) {
		return k, k + 1
	}
	return -1, next
}

// equal reports whether f and g are written alike. Every field of
// CallFrame must be compared here (TestFrameEqualSeesEveryField).
func (f *CallFrame) equal(g *CallFrame) bool {
	return f.ParticipantID == g.ParticipantID && f.CallID == g.CallID &&
		f.PID == g.PID && f.Host == g.Host &&
		f.StartTime.Equal(g.StartTime.Time) && f.LastHeartbeat.Equal(g.LastHeartbeat.Time) &&
		f.State == g.State && f.Description == g.Description &&
		slices.Equal(f.Resources, g.Resources) && f.FailOnCrash == g.FailOnCrash
}

func (e *encoder) encode(d *Data) {
	e.open('{')
	e.str("operationId", d.OperationID)
	e.str("initiatorId", d.InitiatorID)
	if d.Description != "" {
		e.str("description", d.Description)
	}
	e.time("startTime", d.StartTime)
	e.str("operationState", d.OperationState)
	e.bool("aborted", d.Aborted)
	e.time("lastHeartbeat", d.LastHeartbeat)

	e.key("callFrames")
	if d.CallFrames == nil {
		e.null()
	} else {
		e.open('[')
		if e.fc != nil {
			e.fc.frames(e, d.CallFrames)
		} else {
			for i := range d.CallFrames {
				e.item()
				e.frameBody(&d.CallFrames[i])
			}
		}
		e.close(']')
	}
	e.key("tempResources")
	if d.TempResources == nil {
		e.null()
	} else {
		e.open('[')
		for _, r := range d.TempResources {
			e.item()
			e.open('{')
			e.str("path", r.Path)
			e.int("owner", r.Owner)
			e.time("registeredAt", r.RegisteredAt)
			if r.ParticipantID != "" {
				e.str("participantId", r.ParticipantID)
			}
			if r.Host != "" {
				e.str("host", r.Host)
			}
			if r.RegisteredVia != "" {
				e.str("registeredVia", r.RegisteredVia)
			}
			e.close('}')
		}
		e.close(']')
	}
	e.key("participants")
	if d.Participants == nil {
		e.null()
	} else {
		e.open('[')
		for _, p := range d.Participants {
			e.item()
			e.open('{')
			e.str("participantId", p.ParticipantID)
			e.int("pid", p.PID)
			e.str("host", p.Host)
			e.int("sessions", p.Sessions)
			e.time("joinedAt", p.JoinedAt)
			e.time("lastHeartbeat", p.LastHeartbeat)
			e.str("state", p.State)
			if p.HeartbeatIntervalMs != 0 {
				e.int("heartbeatIntervalMs", p.HeartbeatIntervalMs)
			}
			if p.StaleThresholdMs != 0 {
				e.int("staleThresholdMs", p.StaleThresholdMs)
			}
			if p.Remote {
				e.bool("remote", p.Remote)
			}
			e.close('}')
		}
		e.close(']')
	}
	if d.DetectionTimestamp != nil {
		e.time("detectionTimestamp", *d.DetectionTimestamp)
	}
	if d.RemovalTimestamp != nil {
		e.time("removalTimestamp", *d.RemovalTimestamp)
	}
	if f := d.Failure; f != nil {
		e.key("failure")
		e.open('{')
		e.time("failedAt", f.FailedAt)
		e.str("reason", f.Reason)
		if f.ParticipantID != "" {
			e.str("participantId", f.ParticipantID)
		}
		e.key("crashedCallIds")
		e.strings(f.CrashedCallIDs)
		if f.Coordinator != "" {
			e.str("coordinator", f.Coordinator)
		}
		e.close('}')
	}
	if d.DartParticipant != "" {
		e.str("dartParticipant", d.DartParticipant)
	}
	if d.JournalRev != 0 {
		e.key("journalRev")
		e.b = strconv.AppendUint(e.b, d.JournalRev, 10)
	}
	if len(d.Keys) > 0 {
		e.key("idempotencyKeys")
		e.open('{')
		for _, by := range slices.Sorted(maps.Keys(d.Keys)) {
			e.item()
			e.b = appendString(e.b, by) // a participant's Key: escape it
			e.b = append(e.b, ':', ' ')
			e.strings(d.Keys[by])
		}
		e.close('}')
	}
	e.close('}')
}

// frameBody writes f from '{' to '}'.
func (e *encoder) frameBody(f *CallFrame) {
	e.open('{')
	e.str("participantId", f.ParticipantID)
	e.str("callId", f.CallID)
	e.int("pid", f.PID)
	if f.Host != "" {
		e.str("host", f.Host)
	}
	e.time("startTime", f.StartTime)
	e.time("lastHeartbeat", f.LastHeartbeat)
	e.str("state", f.State)
	if f.Description != "" {
		e.str("description", f.Description)
	}
	if len(f.Resources) > 0 {
		e.key("resources")
		e.strings(f.Resources)
	}
	e.bool("failOnCrash", f.FailOnCrash)
	e.close('}')
}

// encoder writes indented JSON. first tracks whether the next member of the
// innermost open object or array is its first; empty containers are written
// as {} and [] like encoding/json does.
type encoder struct {
	b     []byte
	depth int
	first bool

	fc    *frameCache // reuses unchanged frames; nil to encode all
	spans []span      // where each frame went in b, when fc is set
}

func (e *encoder) newline() {
	e.b = append(e.b, '\n')
	for range e.depth {
		e.b = append(e.b, ' ', ' ')
	}
}

func (e *encoder) open(c byte) {
	e.b = append(e.b, c)
	e.depth++
	e.first = true
}

func (e *encoder) close(c byte) {
	e.depth--
	if !e.first {
		e.newline()
	}
	e.b = append(e.b, c)
	e.first = false
}

// item starts an element of an array.
func (e *encoder) item() {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.newline()
}

// key starts a member; k is one of the constant keys of Data, which need
// no escaping.
func (e *encoder) key(k string) {
	e.item()
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':', ' ')
}

func (e *encoder) null() { e.b = append(e.b, "null"...) }

func (e *encoder) str(k, v string) {
	e.key(k)
	e.b = appendString(e.b, v)
}

func (e *encoder) int(k string, v int) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, int64(v), 10)
}

func (e *encoder) bool(k string, v bool) {
	e.key(k)
	e.b = strconv.AppendBool(e.b, v)
}

func (e *encoder) time(k string, v Time) {
	e.key(k)
	e.b = appendTime(e.b, v.Time)
}

// appendTime appends t as Time.MarshalJSON writes it, quoted:
// 2006-01-02T15:04:05.000Z. The fixed layout is written digit by digit,
// several times faster than time.AppendFormat.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return Time{t}.appendJSON(b)
	}
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(b, '"',
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+min/10), byte('0'+min%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z', '"')
}

func (e *encoder) strings(vs []string) {
	if vs == nil {
		e.null()
		return
	}
	e.open('[')
	for _, v := range vs {
		e.item()
		e.b = appendString(e.b, v)
	}
	e.close(']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with the escaping of
// encoding/json: control characters, quote, backslash, <, >, &, U+2028,
// U+2029, and invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
