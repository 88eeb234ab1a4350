package ledger

import (
	"context"
	"sync"
	"time"
)

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
	HeartbeatLockFailed                               // the beat's read ended with ErrLockTimeout (a beat takes no lock of the operation; its store or server may still wait for one)
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
	Type    HeartbeatErrorType // what went wrong
	Message string             // what went wrong, for people
	Cause   error              // the underlying error, or nil
}

// Error returns the type, the message and the cause, if any.
func (e *HeartbeatError) Error() string {
	msg := "ledger: heartbeat " + e.Type.String() + ": " + e.Message
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *HeartbeatError) Unwrap() error { return e.Cause }

// notifier hands heartbeat events to the callbacks on its own goroutine.
// Successes are coalesced to the latest; errors queue up to a bound, past
// which the oldest are dropped. The monitor never waits for a callback.
type notifier struct {
	wake chan struct{} // one pending wake-up

	mu     sync.Mutex // guards latest, errs
	latest *HeartbeatResult
	errs   []*HeartbeatError
}

const maxQueuedHeartbeatErrors = 64

func (n *notifier) success(r HeartbeatResult) {
	n.mu.Lock()
	n.latest = &r
	n.mu.Unlock()
	n.poke()
}

func (n *notifier) failure(err *HeartbeatError) {
	n.mu.Lock()
	if len(n.errs) == maxQueuedHeartbeatErrors {
		n.errs = n.errs[1:]
	}
	n.errs = append(n.errs, err)
	n.mu.Unlock()
	n.poke()
}

func (n *notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run(st *opState, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-st.c.life.Done():
			return
		case <-n.wake:
		}
		n.mu.Lock()
		latest, errs := n.latest, n.errs
		n.latest, n.errs = nil, nil
		n.mu.Unlock()
		sessions := st.sessionList()
		for _, err := range errs {
			if f := st.c.opts.Callback.OnGlobalHeartbeatError; f != nil {
				f(st.id, err)
			}
			for _, op := range sessions {
				if op.cb.OnHeartbeatError != nil {
					op.cb.OnHeartbeatError(op, err)
				}
			}
		}
		if latest != nil {
			for _, op := range sessions {
				if op.cb.OnHeartbeatSuccess != nil {
					op.cb.OnHeartbeatSuccess(op, *latest)
				}
			}
		}
	}
}

// Heartbeat does one heartbeat now, besides the automatic ones, and returns
// what it saw. The callbacks of the sessions run as for any beat.
func (op *Operation) Heartbeat(ctx context.Context) (HeartbeatResult, error) {
	if err := op.usable(); err != nil {
		return HeartbeatResult{}, err
	}
	return op.st.mon.beatNow(ctx)
}

// StopHeartbeat pauses the automatic heartbeats of this process on the
// operation (for every session), the touches of its liveness file
// included. Other participants will declare it crashed once its heartbeat
// is older than its stale threshold.
func (op *Operation) StopHeartbeat() { op.st.mon.setPaused(true) }

// StartHeartbeat resumes automatic heartbeats after StopHeartbeat. They run
// from the start of the operation; calling it otherwise has no effect.
func (op *Operation) StartHeartbeat() { op.st.mon.setPaused(false) }

func (m *monitor) setPaused(p bool) { m.paused.Store(p) }
