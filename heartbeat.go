package ledger

import "time"

// HeartbeatResult is what one heartbeat saw.
type HeartbeatResult struct {
	AbortFlag         bool                     // the ledger's abort flag
	LedgerExists      bool                     // the operation is still live
	CallFrameCount    int                      // frames after the beat
	TempResourceCount int                      // temp resources after the beat
	HeartbeatAge      time.Duration            // age of this process's previous beat
	Participants      []string                 // "id/pid@host" of every active participant
	ParticipantAges   map[string]time.Duration // time since each was seen to beat
	StaleParticipants []string                 // participants past the stale threshold
	DataBefore        *Data                    // the state before the beat
	DataAfter         *Data                    // the state after the beat
}

// HeartbeatErrorType classifies a HeartbeatError.
type HeartbeatErrorType int

// Heartbeat error types, as in Dart.
const (
	HeartbeatLedgerNotFound HeartbeatErrorType = iota // the operation is gone
	HeartbeatLockFailed                               // the file lock could not be had
	HeartbeatAbortFlagSet                             // the abort flag is set (reported once)
	HeartbeatStale                                    // a participant is stale
	HeartbeatIOError                                  // any other failure
)

// String returns the Dart name of the type, such as "ledgerNotFound".
func (t HeartbeatErrorType) String() string {
	switch t {
	case HeartbeatLedgerNotFound:
		return "ledgerNotFound"
	case HeartbeatLockFailed:
		return "lockFailed"
	case HeartbeatAbortFlagSet:
		return "abortFlagSet"
	case HeartbeatStale:
		return "heartbeatStale"
	case HeartbeatIOError:
		return "ioError"
	}
	return "unknown"
}

// HeartbeatError is a heartbeat problem, delivered to OnHeartbeatError.
type HeartbeatError struct {
	Type    HeartbeatErrorType
	Message string
	Cause   error
}

func (e *HeartbeatError) Error() string {
	msg := "ledger: heartbeat " + e.Type.String() + ": " + e.Message
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *HeartbeatError) Unwrap() error { return e.Cause }

// startBackground starts the goroutines that keep the operation alive in
// this process.
func (st *opState) startBackground() {}
