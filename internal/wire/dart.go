package wire

import (
	"bytes"
	"encoding/json"

	"github.com/tomdist/ledger/internal/store"
)

// Dart clients.
//
// The Dart RemoteLedgerClient (tom_dist_ledger) speaks to the Dart
// LedgerServer, which remembers one participant per operation and acts in
// its name: only /operation/create and /operation/join say who asks
// (participantId, and participantPid, which may be -1 or absent); every
// other request names just the operation (and the call, message, ...).
// The server of this package serves those requests as the Dart server
// did, with the Dart answers (flat objects such as DartSession and
// DartHeartbeat; failures as Error, with the Dart statuses), for the
// participant the operation is bound to. The binding is kept in the
// ledger, in the state's dartParticipant, not in the server: it is the
// participant that created the operation, or first joined it, with a
// Dart request (a later Dart join while that participant is active joins
// it again, as in Dart: its session count grows), and it outlives a
// restart of the server.
//
// A request is a Dart client's if and only if its body is a JSON object
// that has neither an "after" member (Position) nor a "host" member
// (Participant), at its top level, with keys matched as encoding/json
// matches them (case-insensitively); see IsDart. Every request of a Go
// RemoteClient has both; the Dart client sends neither, ever. A request
// with either is served as a Go request (one with host but without after,
// such as a hand-written one, names its participant and gets the
// DataReply or OK shape). Routes that Dart does not have (crash,
// cleanedup, finish, temp) take Go requests only.

// IsDart reports whether body, a request body, is a Dart client's: a JSON
// object without "after" and "host" members (see above). A body that is
// not a JSON object is not a Dart request; the server reports it as a
// bad request.
func IsDart(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var probe struct {
		After json.RawMessage `json:"after"`
		Host  json.RawMessage `json:"host"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	return probe.After == nil && probe.Host == nil
}

// DartUnknownPID is the pid the server records for a Dart participant
// whose create or join did not give one (participantPid absent, or not
// positive: Dart's -1). The Dart server writes -1, but a participant
// record of this ledger needs a positive pid (it names the participant's
// liveness files). It is the largest int32, which no supported system
// gives a process (Linux pids stay below 2^22, macOS and FreeBSD below
// 100000, and Windows pids are multiples of 4), so it never names a real
// process; the participant's host, the client's address, tells Dart
// clients apart from local participants.
const DartUnknownPID = 1<<31 - 1

// missing reports a required field of a Dart request (the Dart server
// answers 400 "Missing <field>"; this one 400 with this error).
func missing(field string) error { return &FieldError{field, "missing"} }

func checkDartOperation(id string) error {
	if id == "" {
		return missing("operationId")
	}
	return store.CheckOperationID(id)
}

func checkDartCall(op, call string) error {
	if err := checkDartOperation(op); err != nil {
		return err
	}
	if call == "" {
		return missing("callId")
	}
	return store.CheckCallID(call)
}

// DartCreateRequest is a Dart /operation/create: the server chooses the
// operation id. Description is accepted (the Dart server drops it; this
// one records it).
type DartCreateRequest struct {
	ParticipantID  string  `json:"participantId"`
	ParticipantPID *int    `json:"participantPid"` // absent or -1: unknown
	Description    *string `json:"description"`
}

// Validate checks the participant id.
func (r *DartCreateRequest) Validate() error {
	if r.ParticipantID == "" {
		return missing("participantId")
	}
	return store.CheckParticipantID(r.ParticipantID)
}

// DartJoinRequest is a Dart /operation/join.
type DartJoinRequest struct {
	OperationID    string `json:"operationId"`
	ParticipantID  string `json:"participantId"`
	ParticipantPID *int   `json:"participantPid"` // absent or -1: unknown
}

// Validate checks the operation id and the participant id, in the Dart
// server's order.
func (r *DartJoinRequest) Validate() error {
	if err := checkDartOperation(r.OperationID); err != nil {
		return err
	}
	if r.ParticipantID == "" {
		return missing("participantId")
	}
	return store.CheckParticipantID(r.ParticipantID)
}

// DartOperationRequest is a Dart /operation/leave, complete, heartbeat or
// state. The sessionId and cancelPendingCalls the Dart client sends are
// ignored, as the Dart server ignores them.
type DartOperationRequest struct {
	OperationID string `json:"operationId"`
}

// Validate checks the operation id.
func (r *DartOperationRequest) Validate() error { return checkDartOperation(r.OperationID) }

// DartAbortRequest is a Dart /operation/abort. An absent value is true.
type DartAbortRequest struct {
	OperationID string `json:"operationId"`
	Value       *bool  `json:"value"`
}

// Validate checks the operation id.
func (r *DartAbortRequest) Validate() error { return checkDartOperation(r.OperationID) }

// DartLogRequest is a Dart /operation/log. Level is DEBUG, INFO, WARNING
// or ERROR (the Dart client sends DLLogLevel names in upper case); any
// case is taken, and anything else, or nothing, is INFO, as in Dart.
type DartLogRequest struct {
	OperationID string  `json:"operationId"`
	Message     *string `json:"message"`
	Level       *string `json:"level"`
}

// Validate checks the operation id and that a message is given.
func (r *DartLogRequest) Validate() error {
	if err := checkDartOperation(r.OperationID); err != nil {
		return err
	}
	if r.Message == nil {
		return missing("message")
	}
	return nil
}

// DartCallStartRequest is a Dart /call/start: the server chooses the call
// id (call_{participantId}_{n}_{4 hex}). An absent or null description is
// none; an absent failOnCrash is true. The sessionId is ignored.
type DartCallStartRequest struct {
	OperationID string  `json:"operationId"`
	Description *string `json:"description"`
	FailOnCrash *bool   `json:"failOnCrash"`
}

// Validate checks the operation id.
func (r *DartCallStartRequest) Validate() error { return checkDartOperation(r.OperationID) }

// DartCallRequest is a Dart /call/end, /callframe/create or
// /callframe/delete. The participantId of /callframe/create is ignored,
// as the Dart server ignores it.
type DartCallRequest struct {
	OperationID string `json:"operationId"`
	CallID      string `json:"callId"`
}

// Validate checks the operation id and the call id.
func (r *DartCallRequest) Validate() error { return checkDartCall(r.OperationID, r.CallID) }

// DartCallFailRequest is a Dart /call/fail. An absent error is "unknown".
type DartCallFailRequest struct {
	OperationID string  `json:"operationId"`
	CallID      string  `json:"callId"`
	Error       *string `json:"error"`
}

// Validate checks the operation id and the call id.
func (r *DartCallFailRequest) Validate() error { return checkDartCall(r.OperationID, r.CallID) }

// DartSession answers a Dart /operation/create and /operation/join: the
// participant the operation is bound to (for a join, the one it was
// already bound to, if active), whether it is the initiator, its session
// count as the session id, and its start: when it created or joined the
// operation.
type DartSession struct {
	OperationID   string     `json:"operationId"`
	ParticipantID string     `json:"participantId"`
	IsInitiator   bool       `json:"isInitiator"`
	SessionID     int        `json:"sessionId"`
	StartTime     store.Time `json:"startTime"`
}

// DartHeartbeat answers a Dart /operation/heartbeat. Participants are the
// participant ids of the call frames, one per frame; StaleParticipants
// those of the frames of other participants whose last heartbeat is
// older than their stale threshold. The lists are never null (the Dart
// client casts them as lists).
type DartHeartbeat struct {
	Success           bool     `json:"success"` // true
	AbortFlag         bool     `json:"abortFlag"`
	CallFrameCount    int      `json:"callFrameCount"`
	TempResourceCount int      `json:"tempResourceCount"`
	HeartbeatAgeMs    int64    `json:"heartbeatAgeMs"` // since the operation's last heartbeat before this one
	IsStale           bool     `json:"isStale"`
	Participants      []string `json:"participants"`
	StaleParticipants []string `json:"staleParticipants"`
}

// DartNoLedger answers a Dart /operation/heartbeat for an operation that
// failed (its files are archived, which the Dart server reports so), or
// whose bound participant was declared crashed: the Dart client then
// reports a heartbeat error with the reason.
type DartNoLedger struct {
	Success bool   `json:"success"` // false
	Reason  string `json:"reason"`
}

// DartState answers a Dart /operation/state. Participants are the
// distinct participant ids of the call frames.
type DartState struct {
	OperationID    string   `json:"operationId"`
	State          string   `json:"state"`
	Aborted        bool     `json:"aborted"`
	CallFrameCount int      `json:"callFrameCount"`
	Participants   []string `json:"participants"`
}

// DartCallStarted answers a Dart /call/start.
type DartCallStarted struct {
	CallID    string     `json:"callId"`
	StartedAt store.Time `json:"startedAt"`
}

// DartFrameReply answers a Dart /callframe/create (with the call id) and
// /callframe/delete: Data is the state after the change, which the Dart
// client reads as LedgerData.
type DartFrameReply struct {
	Success bool            `json:"success"` // true
	CallID  string          `json:"callId,omitempty"`
	Data    json.RawMessage `json:"data"`
}
