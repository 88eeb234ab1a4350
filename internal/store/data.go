package store

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Operation states, as the Dart ledger spells them.
const (
	StateRunning   = "running"
	StateCleanup   = "cleanup"
	StateFailed    = "failed"
	StateCompleted = "completed"
)

// Call frame states.
const (
	FrameActive     = "active"
	FrameCrashed    = "crashed"
	FrameCleaningUp = "cleaningUp"
	FrameCleanedUp  = "cleanedUp"
)

// Participant states.
const (
	ParticipantActive  = "active"
	ParticipantLeft    = "left"
	ParticipantCrashed = "crashed"
)

// Data is the content of one {id}.operation.json file. Its JSON keys are
// those of the Dart ledger, plus description, participants (with their
// heartbeat settings), failure and the participantId, host and
// registeredVia of temp resources.
//
// A *Data handed out by the Store is shared and must not be modified; use
// Clone to get a copy that may be.
type Data struct {
	OperationID        string         `json:"operationId"`                  // the operation id
	InitiatorID        string         `json:"initiatorId"`                  // the participant that created the operation
	Description        string         `json:"description,omitempty"`        // free text given at creation
	StartTime          Time           `json:"startTime"`                    // when the operation was created
	OperationState     string         `json:"operationState"`               // running, cleanup, failed or completed
	Aborted            bool           `json:"aborted"`                      // the abort flag
	LastHeartbeat      Time           `json:"lastHeartbeat"`                // the latest heartbeat of any participant
	CallFrames         []CallFrame    `json:"callFrames"`                   // the calls that run (or ran and crashed)
	TempResources      []TempResource `json:"tempResources"`                // registered temporary paths
	Participants       []Participant  `json:"participants"`                 // every process that took part
	DetectionTimestamp *Time          `json:"detectionTimestamp,omitempty"` // when a failure or crash was detected
	RemovalTimestamp   *Time          `json:"removalTimestamp,omitempty"`   // when the frames were removed after it
	Failure            *Failure       `json:"failure,omitempty"`            // why the operation failed, once it has
	// DartParticipant is the Key of the participant that the requests of
	// Dart clients through a ledger server act for (a Dart request does
	// not say who sends it): the one that created the operation, or first
	// joined it, through a server with a Dart request. Empty when none
	// did.
	DartParticipant string `json:"dartParticipant,omitempty"`
	// JournalRev is the position in the operation's journal of a state
	// written as a document (a snapshot, operation.json): a document with
	// it was written from a journal, one without (the Dart ledger's) was
	// not. Zero elsewhere.
	JournalRev uint64 `json:"journalRev,omitempty"`
	// Keys are the idempotency keys of the latest changes that carried one
	// (requests of remote clients), by the Key of the participant that
	// sent them, oldest first and bounded per participant: a server asked
	// again for a change it made before, perhaps before a restart, finds
	// its key here even where the journal was compacted since. Not part
	// of the state users see.
	Keys map[string][]string `json:"idempotencyKeys,omitempty"`
}

// CallFrame is one tracked call while it runs.
type CallFrame struct {
	ParticipantID string   `json:"participantId"`         // the participant that runs the call
	CallID        string   `json:"callId"`                // the call id
	PID           int      `json:"pid"`                   // the pid of its process
	Host          string   `json:"host,omitempty"`        // the host of its process
	StartTime     Time     `json:"startTime"`             // when the call started
	LastHeartbeat Time     `json:"lastHeartbeat"`         // the last heartbeat of its process
	State         string   `json:"state"`                 // active, crashed, cleaningUp or cleanedUp
	Description   string   `json:"description,omitempty"` // free text given at start
	Resources     []string `json:"resources,omitempty"`   // resources the call holds (Dart field; unused here)
	FailOnCrash   bool     `json:"failOnCrash"`           // a failure of the call fails the operation
}

// TempResource is a path registered for deletion when its owner is gone.
type TempResource struct {
	Path          string `json:"path"`                    // the absolute path
	Owner         int    `json:"owner"`                   // the pid of the process that registered it
	RegisteredAt  Time   `json:"registeredAt"`            // when it was registered
	ParticipantID string `json:"participantId,omitempty"` // the participant that registered it
	Host          string `json:"host,omitempty"`          // the host of that process
	// RegisteredVia says how the path was registered: ViaLocal by a
	// process on the ledger directory, ViaServer through a ledger server
	// (the server writes it, whatever its client says). Empty in records
	// of other writers, such as the Dart ledger.
	RegisteredVia string `json:"registeredVia,omitempty"`
}

// Values of TempResource.RegisteredVia.
const (
	ViaLocal  = "local"
	ViaServer = "server"
)

// Participant is one process taking part in the operation.
type Participant struct {
	ParticipantID string `json:"participantId"` // the participant id
	PID           int    `json:"pid"`           // the pid of the process
	Host          string `json:"host"`          // the host of the process
	Sessions      int    `json:"sessions"`      // open sessions of the process
	JoinedAt      Time   `json:"joinedAt"`      // when the process first joined
	LastHeartbeat Time   `json:"lastHeartbeat"` // its last heartbeat
	State         string `json:"state"`         // active, left or crashed
	// HeartbeatIntervalMs and StaleThresholdMs are the participant's own
	// heartbeat settings, by which the others judge it. Zero (absent, as
	// the Dart ledger writes) means the defaults, 5s and 15s.
	HeartbeatIntervalMs int `json:"heartbeatIntervalMs,omitempty"`
	StaleThresholdMs    int `json:"staleThresholdMs,omitempty"`
	// Remote marks a participant that takes part through a ledger server:
	// it holds no lease in the store, and is judged by its beats and its
	// server's stream.
	Remote bool `json:"remote,omitempty"`
}

// Failure records why an operation failed.
type Failure struct {
	FailedAt       Time     `json:"failedAt"`                // when the failure was recorded
	Reason         string   `json:"reason"`                  // the error of the call, or why its process is gone
	ParticipantID  string   `json:"participantId,omitempty"` // the participant whose call failed or crashed
	CrashedCallIDs []string `json:"crashedCallIds"`          // the calls whose failure failed the operation
	// Coordinator is the Key of the participant process that detected the
	// failure and finishes the cleanup.
	Coordinator string `json:"coordinator,omitempty"`
}

// UnknownPID is the pid a Dart ledger server writes into the call frames
// of a client that did not say its pid. It is allowed in frames, never in
// participant records.
const UnknownPID = -1

// Key names a participant process: "{participantId}/{pid}@{host}".
func Key(id string, pid int, host string) string {
	return id + "/" + strconv.Itoa(pid) + "@" + host
}

// Key returns the Key of the participant process.
func (p *Participant) Key() string { return Key(p.ParticipantID, p.PID, p.Host) }

// Key returns the Key of the participant process that runs the call.
func (f *CallFrame) Key() string { return Key(f.ParticipantID, f.PID, f.Host) }

// CloneFrames returns a copy of d whose call frames are its own, as are
// its scalar fields; the lists of participants and temporary resources,
// the keys, the failure and the timestamps behind pointers it shares with
// d, so they must not be modified. A call's start and end change nothing
// but the frames, and copying the participants of a busy operation for
// each of them was a third of what its processes allocated.
func (d *Data) CloneFrames() *Data {
	if d == nil {
		return nil
	}
	c := *d
	c.CallFrames = cloneFrames(d.CallFrames)
	return &c
}

// Clone returns a copy of d that shares nothing mutable with it.
func (d *Data) Clone() *Data {
	if d == nil {
		return nil
	}
	c := *d
	c.CallFrames = cloneFrames(d.CallFrames)
	c.TempResources = slices.Clone(d.TempResources) // empty stays empty, not nil
	c.Participants = slices.Clone(d.Participants)
	if d.Keys != nil {
		c.Keys = make(map[string][]string, len(d.Keys))
		for by, ks := range d.Keys {
			c.Keys[by] = slices.Clip(ks) // remember appends to a copy
		}
	}
	if d.DetectionTimestamp != nil {
		t := *d.DetectionTimestamp
		c.DetectionTimestamp = &t
	}
	if d.RemovalTimestamp != nil {
		t := *d.RemovalTimestamp
		c.RemovalTimestamp = &t
	}
	if d.Failure != nil {
		f := *d.Failure
		f.CrashedCallIDs = slices.Clone(d.Failure.CrashedCallIDs)
		c.Failure = &f
	}
	return &c
}

func cloneFrames(fs []CallFrame) []CallFrame {
	if fs == nil {
		return nil
	}
	out := make([]CallFrame, len(fs), len(fs)+1) // room for the frame a change adds
	copy(out, fs)
	for i := range out {
		if out[i].Resources != nil {
			out[i].Resources = append([]string(nil), out[i].Resources...)
		}
	}
	return out
}

// Frame returns the index of the frame with the given call id, or -1.
func (d *Data) Frame(callID string) int {
	for i := range d.CallFrames {
		if d.CallFrames[i].CallID == callID {
			return i
		}
	}
	return -1
}

// Participant returns the index of the participant record of the given
// process, or -1.
func (d *Data) Participant(id, host string, pid int) int {
	for i, p := range d.Participants {
		if p.ParticipantID == id && p.Host == host && p.PID == pid {
			return i
		}
	}
	return -1
}

// Finished reports whether the operation reached a terminal state.
func (d *Data) Finished() bool {
	return d.OperationState == StateCompleted || d.OperationState == StateFailed
}

// Time is a time.Time that is written as RFC 3339 in UTC with millisecond
// precision and read from RFC 3339 or from the offset-less form the Dart
// ledger writes (DateTime.toIso8601String of a local time, read as a time
// of the reader's local zone, time.Local: see ParseTime).
type Time struct{ time.Time }

// Now returns the current wall-clock time as a Time, truncated to what is
// written, shifted by the clock skew set for tests.
func Now() Time {
	return Time{time.Now().Add(time.Duration(skew.Load())).UTC().Truncate(time.Millisecond)}
}

// skew shifts Now, so that tests can give a process a wrong wall clock.
var skew atomic.Int64

// SetClockSkew shifts the wall clock this process writes by d. It is a test
// seam: nothing in the ledger may depend on wall clocks agreeing.
func SetClockSkew(d time.Duration) { skew.Store(int64(d)) }

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendText appends the written form of t to b.
func (t Time) appendJSON(b []byte) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"')
}

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) { return t.appendJSON(nil), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = Time{}
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("timestamp %s is not a string", b)
	}
	v, err := ParseTime(string(b[1 : len(b)-1]))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseTime reads a timestamp in RFC 3339 or in the Dart offset-less form,
// and returns it in UTC. The Dart package writes the local time of its
// machine without an offset (DateTime.now().toIso8601String()); such a time
// is read in the local zone of this process (time.Local, as the TZ
// environment variable or the system sets it), which is the writer's when
// both run on the machine of the ledger directory. A time in the hour
// that the end of summer time repeats may be read an hour off. A time
// whose UTC year is not 0000 to 9999 (reachable through an offset) is
// refused: it could not be written back in RFC 3339.
func ParseTime(s string) (Time, error) {
	if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if y := v.UTC().Year(); y < 0 || y > 9999 {
			return Time{}, fmt.Errorf("timestamp %q is in year %d in UTC, outside RFC 3339", s, y)
		}
		return Time{v.UTC()}, nil
	}
	// Dart: 2024-01-15T10:30:00.123456 (no offset); also accept a space.
	layout := "2006-01-02T15:04:05.999999999"
	if strings.Contains(s, " ") {
		layout = "2006-01-02 15:04:05.999999999"
	}
	v, err := time.ParseInLocation(layout, s, time.Local)
	if err != nil {
		return Time{}, fmt.Errorf("timestamp %q is neither RFC 3339 nor the Dart form", s)
	}
	if y := v.UTC().Year(); y < 0 || y > 9999 {
		return Time{}, fmt.Errorf("timestamp %q is in year %d in UTC, outside RFC 3339", s, y)
	}
	return Time{v.UTC()}, nil
}

// Equal reports whether f and g are the same frame, field by field.
func (f *CallFrame) Equal(g *CallFrame) bool { return f.equal(g) }
