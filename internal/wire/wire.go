// Package wire holds the JSON requests and responses of the ledger HTTP
// protocol, shared by the server (ledger.NewServer) and the client
// (ledger.RemoteClient). Paths and field names follow the Dart
// tom_dist_ledger server where it has them; unlike it, the server remembers
// nothing between requests, so every request of a Go client names its
// participant. Requests of the Dart client, which do not, are served too:
// see dart.go (Dart clients) for how they are told apart and whom they
// act for.
//
// Every request is a POST with a JSON object body, except GET /health and
// GET /status. A success is 200 with a JSON object; a failure is an Error
// with one of the status codes and codes below.
package wire

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

// Service is what GET /status answers in "service"; discovery accepts only
// servers that answer it.
const Service = "tom_dist_ledger"

// Version is the protocol version GET /status answers.
const Version = "0.1.0"

// MaxBody is the largest request body the server reads (1 MiB).
const MaxBody = 1 << 20

// HeaderTimeout carries, in milliseconds, how long the client will wait for
// the answer: the server gives up its lock wait before then, so the client
// hears lock_timeout instead of timing out itself.
//
// The value is a positive decimal integer of ASCII digits only (leading
// zeros allowed); see ParseTimeout. A value above the server's own lock
// timeout, however large (also beyond what an int64 or a time.Duration
// holds), is clamped to it. A request that sends the header more than
// once, or with any other value (empty, 0, negative, signed, fractional,
// with a unit, a list), gets 400 bad_request: the client has a bug, and a
// guess at what it meant could make it wait for an answer that comes too
// late. Without the header the server waits its own lock timeout.
const HeaderTimeout = "Ledger-Timeout"

// ParseTimeout reads one HeaderTimeout value as described there: it
// returns the timeout, at most limit (which must not be negative), and
// whether the value is well-formed.
func ParseTimeout(v string, limit time.Duration) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	v = strings.TrimLeft(v, "0")
	switch {
	case v == "":
		return 0, false // zero
	case len(v) > 15:
		return limit, true // more than 30,000 years
	}
	ms, err := strconv.ParseInt(v, 10, 64) // at most 15 digits: it fits
	if err != nil || ms > int64(limit/time.Millisecond) {
		return limit, true // ms milliseconds exceed limit
	}
	return time.Duration(ms) * time.Millisecond, true
}

// Paths of the protocol.
const (
	PathHealth = "/health"
	PathStatus = "/status"

	PathCreate    = "/operation/create"
	PathJoin      = "/operation/join"
	PathLeave     = "/operation/leave"
	PathComplete  = "/operation/complete"
	PathHeartbeat = "/operation/heartbeat"
	PathAbort     = "/operation/abort"
	PathState     = "/operation/state"
	PathLog       = "/operation/log"
	PathCrash     = "/operation/crash"     // not in Dart: reportCrash
	PathCleanedUp = "/operation/cleanedup" // not in Dart: cleanedUp
	PathFinish    = "/operation/finish"    // not in Dart: finishCleanup

	PathCallStart       = "/call/start"
	PathCallEnd         = "/call/end"
	PathCallFail        = "/call/fail"
	PathCallFrameCreate = "/callframe/create"
	PathCallFrameDelete = "/callframe/delete"

	PathTempRegister   = "/temp/register"   // not in Dart: temp resources live in the ledger
	PathTempUnregister = "/temp/unregister" // not in Dart
)

// Error codes, stable across versions: clients map them back to errors.
const (
	CodeBadRequest         = "bad_request"         // 400: malformed JSON, missing or wrong field
	CodeInvalidID          = "invalid_id"          // 400: an id of the wrong form
	CodeUnauthorized       = "unauthorized"        // 401: missing or wrong bearer token
	CodeForbiddenHost      = "forbidden_host"      // 403: tokenless server asked by host name
	CodeNotFound           = "not_found"           // 404: no such path
	CodeOperationNotFound  = "operation_not_found" // 404
	CodeCallNotFound       = "call_not_found"      // 404
	CodeCallExists         = "call_exists"         // 409
	CodeMethodNotAllowed   = "method_not_allowed"  // 405
	CodeOperationCompleted = "operation_completed" // 409
	CodeOperationFailed    = "operation_failed"    // 409, with Failure
	CodeOperationExists    = "operation_exists"    // 409: create of an id in use
	CodeNotInitiator       = "not_initiator"       // 409
	CodeNotParticipant     = "not_participant"     // 409: heartbeat of a process the operation does not know
	CodeTooLarge           = "too_large"           // 413: body above MaxBody
	CodeUnsupportedMedia   = "unsupported_media"   // 415: body not application/json
	CodeLockTimeout        = "lock_timeout"        // 500
	CodeCorruptLedger      = "corrupt_ledger"      // 500
	CodeInternal           = "internal"            // 500
	CodeUnavailable        = "unavailable"         // 503: server closed or not ready
)

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// Failure describes the failure of the operation, with
	// CodeOperationFailed.
	Failure *Failure `json:"failure,omitempty"`
}

// Failure is an operation failure as the client rebuilds it into an
// *ledger.OperationFailedError.
type Failure struct {
	OperationID    string     `json:"operationId"`
	FailedAt       store.Time `json:"failedAt"`
	Reason         string     `json:"reason,omitempty"`
	ParticipantID  string     `json:"participantId,omitempty"`
	CrashedCallIDs []string   `json:"crashedCallIds,omitempty"`
}

// Health is the answer of GET /health.
type Health struct {
	Status string `json:"status"` // "ok"
}

// Status is the answer of GET /status. It names neither the directory nor
// anything else about the host.
type Status struct {
	Service string `json:"service"` // Service
	Version string `json:"version"`
	Port    int    `json:"port,omitempty"` // the port the request came in on
}

// OK is the answer of a request that returns no state.
type OK struct {
	Success bool `json:"success"` // always true
}

// DataReply is the answer of a request that returns the operation's state
// (LedgerData JSON, as in the ledger file).
type DataReply struct {
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
}

// CrashReply is the answer of PathCrash.
type CrashReply struct {
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	// Crashed is true when this report declared the victim crashed.
	Crashed bool `json:"crashed"`
}

// Request is implemented by every request body: Validate reports the first
// missing or malformed field, as a *store.IDError for a bad id and a
// *FieldError otherwise.
type Request interface {
	Validate() error
}

// FieldError reports a missing or malformed request field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "ledger: field " + e.Field + ": " + e.Reason }

// Participant names the participant process a request acts for.
type Participant struct {
	ParticipantID  string `json:"participantId"`
	ParticipantPID int    `json:"participantPid"`
	Host           string `json:"host"`
	// HeartbeatIntervalMs and StaleThresholdMs are the participant's own
	// heartbeat settings, written into its record on create and join (not
	// in Dart). Absent means the defaults, 5s and 15s.
	HeartbeatIntervalMs int `json:"heartbeatIntervalMs,omitempty"`
	StaleThresholdMs    int `json:"staleThresholdMs,omitempty"`
}

// Validate checks the fields.
func (p *Participant) Validate() error { return p.validate("") }

// Member returns p; a request that embeds a Participant names its sender
// through it.
func (p *Participant) Member() *Participant { return p }

func (p *Participant) validate(prefix string) error {
	if p.ParticipantID == "" {
		return &FieldError{prefix + "participantId", "missing"}
	}
	if err := store.CheckParticipantID(p.ParticipantID); err != nil {
		return err
	}
	if p.ParticipantPID <= 0 {
		return &FieldError{prefix + "participantPid", "missing or not a positive integer"}
	}
	if p.Host == "" {
		return &FieldError{prefix + "host", "missing"}
	}
	if reason := checkHost(p.Host); reason != "" {
		return &FieldError{prefix + "host", reason}
	}
	if reason := checkSetting(p.HeartbeatIntervalMs); reason != "" {
		return &FieldError{prefix + "heartbeatIntervalMs", reason}
	}
	if reason := checkSetting(p.StaleThresholdMs); reason != "" {
		return &FieldError{prefix + "staleThresholdMs", reason}
	}
	return nil
}

// MaxSettingMs bounds heartbeatIntervalMs and staleThresholdMs (about 34
// years): the durations that observers compute from them, a few times
// the threshold in nanoseconds, must not overflow, which would make a
// live participant stale at once.
const MaxSettingMs = 1 << 40

func checkSetting(ms int) string {
	switch {
	case ms < 0:
		return "negative"
	case ms > MaxSettingMs:
		return fmt.Sprintf("more than %d", MaxSettingMs)
	}
	return ""
}

// checkHost accepts what a host name or address may contain: 1 to 255
// bytes of letters, digits and "_.:-%".
func checkHost(h string) string {
	if len(h) > 255 {
		return "longer than 255 bytes"
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("_.:-%", c) >= 0
		if !ok {
			return fmt.Sprintf("byte %q at %d is not allowed", c, i)
		}
	}
	return ""
}

func checkOperation(id string) error {
	if id == "" {
		return &FieldError{"operationId", "missing"}
	}
	return store.CheckOperationID(id)
}

func checkCall(id string) error {
	if id == "" {
		return &FieldError{"callId", "missing"}
	}
	return store.CheckCallID(id)
}

// OperationRequest acts on one operation: join, leave, complete,
// heartbeat, state, cleanedup and finish.
type OperationRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
}

// Validate checks the participant and the operation id.
func (r *OperationRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	return checkOperation(r.OperationID)
}

// CreateRequest creates an operation. The client chooses the id
// (YYYYMMDDTHH:MM:SS.mmm-{participantId}-{8 hex}).
type CreateRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	Description string `json:"description,omitempty"`
}

// Validate checks the participant and the operation id.
func (r *CreateRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	return checkOperation(r.OperationID)
}

// LogRequest appends a line to the operation log.
type LogRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	Message     string `json:"message"`
	// Level is debug, info, warning or error, as Dart's DLLogLevel names;
	// empty means info.
	Level string `json:"level,omitempty"`
}

// Validate checks the participant, the operation id and the level.
func (r *LogRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	if err := checkOperation(r.OperationID); err != nil {
		return err
	}
	if _, ok := ParseLevel(r.Level); !ok {
		return &FieldError{"level", fmt.Sprintf("%q is not debug, info, warning or error", r.Level)}
	}
	return nil
}

// Levels are the log levels as sent, indexed by ledger.LogLevel.
var Levels = []string{"debug", "info", "warning", "error"}

// ParseLevel returns the index in Levels of a level name (any case); empty
// is info.
func ParseLevel(s string) (int, bool) {
	if s == "" {
		return 1, true
	}
	for i, l := range Levels {
		if strings.EqualFold(s, l) {
			return i, true
		}
	}
	return 0, false
}

// AbortRequest sets or clears the abort flag.
type AbortRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	// Value is the new flag; absent means true, as in Dart.
	Value *bool `json:"value,omitempty"`
}

// Validate checks the participant and the operation id.
func (r *AbortRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	return checkOperation(r.OperationID)
}

// CallStartRequest adds a call frame: PathCallStart for a tracked call,
// PathCallFrameCreate for a raw frame. The client chooses the call id.
type CallStartRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	CallID      string `json:"callId"`
	Description string `json:"description,omitempty"`
	// FailOnCrash, when absent, is true on PathCallStart (as in Dart) and
	// false on PathCallFrameCreate (as Operation.CreateCallFrame writes).
	FailOnCrash *bool `json:"failOnCrash,omitempty"`
	// Spawned marks a spawned call (CALL_SPAWNED rather than CALL_STARTED).
	Spawned bool `json:"spawned,omitempty"`
}

// Validate checks the participant, the operation id and the call id.
func (r *CallStartRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	if err := checkOperation(r.OperationID); err != nil {
		return err
	}
	return checkCall(r.CallID)
}

// CallEndRequest removes the frame of a call that ended well: PathCallEnd
// or PathCallFrameDelete.
type CallEndRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	CallID      string `json:"callId"`
	// Spawned marks a spawned call (CALL_COMPLETED rather than CALL_ENDED).
	Spawned bool `json:"spawned,omitempty"`
}

// Validate checks the participant, the operation id and the call id.
func (r *CallEndRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	if err := checkOperation(r.OperationID); err != nil {
		return err
	}
	return checkCall(r.CallID)
}

// CallFailRequest removes the frame of a failed call and, when it fails on
// crash, fails the operation.
type CallFailRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	CallID      string `json:"callId"`
	Error       string `json:"error,omitempty"` // the reason
	Stack       string `json:"stack,omitempty"` // goes to the debug log
}

// Validate checks the participant, the operation id and the call id.
func (r *CallFailRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	if err := checkOperation(r.OperationID); err != nil {
		return err
	}
	return checkCall(r.CallID)
}

// TempRequest registers or unregisters a temp resource of the participant.
// The server records the path as registered through it; it never touches
// it, and no other participant deletes it.
type TempRequest struct {
	Participant
	Position
	OperationID string `json:"operationId"`
	Path        string `json:"path"`
}

// Validate checks the participant, the operation id and the path.
func (r *TempRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	if err := checkOperation(r.OperationID); err != nil {
		return err
	}
	if r.Path == "" {
		return &FieldError{"path", "missing"}
	}
	if strings.ContainsRune(r.Path, 0) {
		return &FieldError{"path", "contains a NUL byte"}
	}
	return nil
}

// CrashRequest declares Victim crashed, as seen by the participant.
type CrashRequest struct {
	Participant
	Position
	OperationID string      `json:"operationId"`
	Victim      Participant `json:"victim"`
	// Seen is the victim's lastHeartbeat as the reporter last saw it: the
	// report is ignored if it changed since. Absent means unconditional.
	Seen *store.Time `json:"seen,omitempty"`
}

// Validate checks the participant, the operation id and the victim.
func (r *CrashRequest) Validate() error {
	if err := r.Participant.Validate(); err != nil {
		return err
	}
	if err := checkOperation(r.OperationID); err != nil {
		return err
	}
	return r.Victim.validate("victim.")
}
