package ledger

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

var (
	// ErrInvalidID is returned when an operation, participant or call id does
	// not have the allowed form; the error is an *IDError.
	ErrInvalidID = store.ErrInvalidID

	// ErrOperationNotFound is returned for an operation id that names no
	// operation in the ledger, live or archived.
	ErrOperationNotFound = store.ErrNotFound

	// ErrCorruptLedger is returned when stored data does not have its form
	// (a journal record that fails its checksum before the journal's end,
	// a state document that does not parse or lacks a field); the error
	// is a *CorruptError naming the file, which is left untouched.
	ErrCorruptLedger = store.ErrCorrupt

	// ErrLockTimeout is returned when exclusive access to an operation (the
	// file lock of a ledger directory) could not be had before the context
	// ended.
	ErrLockTimeout = store.ErrLockTimeout

	// ErrDartLocked is returned, with ErrLockTimeout, when a Dart process
	// held its lock file of the operation ({id}.operation.json.lock) for
	// as long as the caller could wait; the message names the file and
	// what it says of its holder.
	ErrDartLocked = errors.New("ledger: a Dart process holds the operation's lock file")

	// ErrOperationCompleted is returned when an operation has completed.
	ErrOperationCompleted = errors.New("ledger: operation completed")

	// ErrOperationFailed is returned, and is the cause of cancelled call
	// contexts, when an operation has failed; the error is usually an
	// *OperationFailedError.
	ErrOperationFailed = errors.New("ledger: operation failed")

	// ErrAborted is the cause of call contexts cancelled by the abort flag.
	ErrAborted = errors.New("ledger: operation aborted")

	// ErrNotInitiator is returned by Complete from a participant that did not
	// create the operation.
	ErrNotInitiator = errors.New("ledger: only the initiator can complete the operation")

	// ErrCallExists is returned when a call frame is created with the id of
	// a frame the operation already has.
	ErrCallExists = errors.New("ledger: call frame already exists")

	// ErrCallNotFound is returned when a call id names no frame in the
	// ledger.
	ErrCallNotFound = errors.New("ledger: call not found")

	// ErrCallCompleted is returned by End or Fail of a call that is over,
	// or while another End or Fail of it is in flight.
	ErrCallCompleted = errors.New("ledger: call already completed")

	// ErrSessionLeft is returned when a session is used after Leave.
	ErrSessionLeft = errors.New("ledger: session has left the operation")

	// ErrClosed is returned when a ledger is used after Close, and is the
	// cause of the contexts Close cancels.
	ErrClosed = errors.New("ledger: ledger closed")

	// ErrPendingCalls is returned by Leave while the session has spawned
	// calls still running; the error is a *PendingCallsError.
	ErrPendingCalls = errors.New("ledger: session has pending calls")

	// ErrNoServer is returned when discovery finds no ledger server.
	ErrNoServer = errors.New("ledger: no ledger server found")

	// ErrCancelled is the cause of a spawned call's context after Cancel,
	// and matches the error of every spawned call whose work was cancelled
	// (see CallCancelledError).
	ErrCancelled = errors.New("ledger: call cancelled")

	// ErrInvalidArgument is returned for a nil or zero-value argument, such
	// as a nil work function or a nil call given to Sync.
	ErrInvalidArgument = errors.New("ledger: invalid argument")

	// ErrWorkerTimeout matches the *WorkerError of a worker process that
	// ran past its Timeout and was ended.
	ErrWorkerTimeout = errors.New("ledger: worker timed out")

	// ErrWorkerOutputLimit is matched by the error of a stdio worker that
	// wrote more than its StdioWorker.MaxOutput to its standard output.
	ErrWorkerOutputLimit = errors.New("ledger: worker output exceeds its limit")

	// ErrNoWorkerEnv is returned by JoinFromEnv in a process whose
	// environment names no operation (EnvOperationID is not set).
	ErrNoWorkerEnv = errors.New("ledger: no operation in the environment (" + EnvOperationID + " is not set)")
)

// IDError reports an id that does not have the allowed form. It matches
// ErrInvalidID.
type IDError struct {
	Kind   string // "operation", "participant" or "call"
	ID     string // the offending id, cut to 80 bytes
	Reason string // what is wrong with it
}

// Error returns "ledger: invalid {kind} id {id}: {reason}".
func (e *IDError) Error() string {
	return fmt.Sprintf("ledger: invalid %s id %q: %s", e.Kind, e.ID, e.Reason)
}

// Is reports whether target is ErrInvalidID.
func (e *IDError) Is(target error) bool { return target == ErrInvalidID }

// idError returns err with an id error of the store as an *IDError.
func idError(err error) error {
	var ie *store.IDError
	if errors.As(err, &ie) {
		return &IDError{Kind: ie.Kind, ID: ie.ID, Reason: ie.Reason}
	}
	return err
}

func checkOperationID(id string) error   { return idError(store.CheckOperationID(id)) }
func checkParticipantID(id string) error { return idError(store.CheckParticipantID(id)) }
func checkCallID(id string) error        { return idError(store.CheckCallID(id)) }

// CorruptError reports a ledger file that does not have the form it must
// have: a journal that fails its checksums in the middle, a state that
// does not parse or lacks a field. The file is left as it is. It matches
// ErrCorruptLedger.
type CorruptError struct {
	Path  string // the file; on a remote ledger, its name without the directory
	Field string // the field that is missing or invalid, as "callFrames[2].state"; empty if the file does not parse
	Err   error  // what is wrong with it
}

// Error names the file and, if known, the field that is wrong.
func (e *CorruptError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("ledger: corrupt ledger file %s: field %s: %v", e.Path, e.Field, e.Err)
	}
	return fmt.Sprintf("ledger: corrupt ledger file %s: %v", e.Path, e.Err)
}

// Unwrap returns what is wrong.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorruptLedger.
func (e *CorruptError) Is(target error) bool { return target == ErrCorruptLedger }

// OperationFailedInfo describes why an operation failed.
type OperationFailedInfo struct {
	OperationID    string    // the operation that failed
	FailedAt       time.Time // when the failure was recorded
	Reason         string    // the error of the call, or why its process is gone
	ParticipantID  string    // the participant whose call failed or crashed
	CrashedCallIDs []string  // the calls whose failure failed the operation
}

// OperationFailedError is returned, and is the cause of cancelled call
// contexts, when an operation has failed. It matches ErrOperationFailed.
type OperationFailedError struct {
	Info OperationFailedInfo // why the operation failed
}

// Error names the operation and says why it failed.
func (e *OperationFailedError) Error() string {
	msg := "ledger: operation " + e.Info.OperationID + " failed"
	if e.Info.Reason != "" {
		msg += ": " + e.Info.Reason
	}
	return msg
}

// Is reports whether target is ErrOperationFailed.
func (e *OperationFailedError) Is(target error) bool { return target == ErrOperationFailed }

// PendingCallsError lists the spawned calls that keep a session from
// leaving. It matches ErrPendingCalls.
type PendingCallsError struct {
	CallIDs []string // the calls still running, oldest first
}

// Error lists the calls still pending.
func (e *PendingCallsError) Error() string {
	return fmt.Sprintf("ledger: session has %d pending calls: %s", len(e.CallIDs), strings.Join(e.CallIDs, ", "))
}

// Is reports whether target is ErrPendingCalls.
func (e *PendingCallsError) Is(target error) bool { return target == ErrPendingCalls }

// CallFailedError is the error of a call whose work failed or panicked.
type CallFailedError struct {
	CallID string // the call that failed
	Err    error  // the work's error, or a *PanicError
}

// Error names the call and the error it failed with.
func (e *CallFailedError) Error() string {
	return fmt.Sprintf("ledger: call %s failed: %v", e.CallID, e.Err)
}

// Unwrap returns the work's error.
func (e *CallFailedError) Unwrap() error { return e.Err }

// CallCancelledError is the error of a spawned call whose work was
// cancelled before it finished well: by Cancel, by Leave with
// CancelPendingCalls, by abort, by the failure or completion of the
// operation, or by Close. It matches ErrCancelled and unwraps to the cause,
// so errors.Is(err, ErrAborted) tells an abort from a Cancel.
type CallCancelledError struct {
	CallID string // the call that was cancelled
	Cause  error  // context.Cause of the call's context
}

// Error names the call and, if it is not ErrCancelled, the cause.
func (e *CallCancelledError) Error() string {
	if e.Cause == nil || e.Cause == ErrCancelled {
		return "ledger: call " + e.CallID + " cancelled"
	}
	return fmt.Sprintf("ledger: call %s cancelled: %v", e.CallID, e.Cause)
}

// Is reports whether target is ErrCancelled.
func (e *CallCancelledError) Is(target error) bool { return target == ErrCancelled }

// Unwrap returns the cause.
func (e *CallCancelledError) Unwrap() error { return e.Cause }

// PanicError is the error of a work function that panicked. The process
// does not crash: the call fails with this error.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack of the panicking goroutine
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("ledger: work panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// RemoteError is an error answered by a ledger server. When its Code has a
// counterpart among the sentinels of this package (operation_not_found is
// ErrOperationNotFound, lock_timeout is ErrLockTimeout, ...), errors.Is
// matches it, so code checks the same errors on both backends; an
// operation failure comes back as an *OperationFailedError instead.
type RemoteError struct {
	StatusCode int    // the HTTP status, such as 404
	Code       string // the stable error code, such as "operation_not_found"
	Message    string // the server's message
}

// Error returns the server's message, status and code.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("ledger: server: %s (%d %s)", strings.TrimPrefix(e.Message, "ledger: "), e.StatusCode, e.Code)
}

// Is reports whether target is the sentinel of e.Code.
func (e *RemoteError) Is(target error) bool {
	for _, c := range errorCodes {
		if c.code == e.Code {
			return c.err == target
		}
	}
	return false
}

// WorkerError is the error of a worker process (ExecFileResultWorker,
// ExecStdioWorker) that ended without a result: it exited with a non-zero
// status or from a signal, ran past its Timeout, or exited without writing
// its result file. It matches ErrWorkerTimeout when it timed out, and
// unwraps to the process's *exec.ExitError, if any.
type WorkerError struct {
	Executable        string    // the program, as given
	ExitCode          int       // the exit status; -1 when a signal ended the process
	Signal            os.Signal // the signal that ended the process, or nil
	TimedOut          bool      // the worker ran past its Timeout and was ended
	MissingResultFile string    // the result file the worker did not write, or ""
	Stderr            string    // the tail of the worker's standard error (at most 4 KiB)
	Err               error     // the *exec.ExitError of the process, or nil
}

// Error says how the worker ended, with the tail of its standard error.
func (e *WorkerError) Error() string {
	var b strings.Builder
	b.WriteString("ledger: worker " + e.Executable)
	switch {
	case e.TimedOut:
		b.WriteString(" timed out and was ended")
	case e.Signal != nil:
		b.WriteString(" was killed by signal " + e.Signal.String())
	default:
		fmt.Fprintf(&b, " exited with status %d", e.ExitCode)
	}
	if e.MissingResultFile != "" {
		b.WriteString(" without writing its result file " + e.MissingResultFile)
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, "; stderr: %q", e.Stderr)
	}
	return b.String()
}

// Is reports whether target is ErrWorkerTimeout and the worker timed out.
func (e *WorkerError) Is(target error) bool { return e.TimedOut && target == ErrWorkerTimeout }

// Unwrap returns the process's *exec.ExitError, or nil.
func (e *WorkerError) Unwrap() error { return e.Err }
