// Package ledger coordinates long-running work that spans several
// processes: a shared, crash-safe record of who takes part in an operation,
// which calls are running, and whether the operation was aborted or failed.
// It is the Go port of the Dart package tom_dist_ledger and keeps its files
// and names.
//
// # Overview
//
// A process connects to a ledger and creates an operation, or joins one by
// its id; inside an operation it runs tracked calls:
//
//	l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir})
//	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
//	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "compile"})
//	// ... the work ...
//	err = call.End(ctx, 3)
//	err = op.Complete(ctx)
//
// The zero Options are valid. A zero ParticipantID names the participant
// "{host}-{pid}" (the host name with characters outside [A-Za-z0-9_-]
// replaced by '_', cut to 40 bytes). Bad options are rejected with an error
// that names the field; nothing is corrected silently. Every method that
// reads or writes the ledger takes a context: a lock wait ends with
// ErrLockTimeout when the context ends, or after Options.LockTimeout (30s)
// when the context has no deadline.
//
// # Backends
//
// With Options.BasePath set, Connect returns a *LocalLedger over that
// directory: flock-guarded JSON files that any number of processes on the
// machine may share. Setting both BasePath and ServerURL is an error. The
// remote backend (a ledger server over HTTP) is not available yet: Connect
// without BasePath returns an error.
//
// # Operations and sessions
//
// CreateOperation makes this participant the initiator and returns an
// operation with an id of the form YYYYMMDDTHH:MM:SS.mmm-{participant}-{8
// hex} (UTC). JoinOperation joins by id; an unknown id is
// ErrOperationNotFound, a completed operation ErrOperationCompleted and a
// failed one an *OperationFailedError. Creating or joining writes the
// participant's record (id, pid, host, sessions, state) into the ledger.
//
// Each CreateOperation or JoinOperation returns a session (*Operation).
// Sessions are numbered from 1 per process and operation. The sessions of
// one process on one operation share its abort and failure state; calls
// are tracked per session. Leave ends a session (refused with
// ErrPendingCalls while calls of the session run, unless
// LeaveOptions.CancelPendingCalls is set); the last session of a process
// marks the participant left (PARTICIPANT_LEFT). Complete, for the
// initiator only (else ErrNotInitiator), marks the operation completed and
// archives it; every handle of it then returns ErrOperationCompleted.
//
// State reads the operation from the ledger and CachedData returns what
// this process saw last. Data, CallFrame, Participant and TempResource are
// aliases of the types of the internal store: their fields are what the
// state file holds, with the JSON keys of the Dart ledger. Values handed
// out are deep copies that the caller may keep and change.
//
// # Calls
//
// StartCall[T] is a package function, as Go has no generic methods. It
// writes a call frame (CALL_STARTED) and returns a *Call[T]; End(ctx,
// result) removes the frame (CALL_ENDED) and runs OnCompletion with the
// result; Fail(ctx, err) removes it (CALL_FAILED) and runs OnCleanup. A
// second End or Fail is ErrCallCompleted. Call ids have the form
// call_{participant}_{n}_{4 hex}. CreateCallFrame and DeleteCallFrame write
// raw frames with no tracking, events or callbacks.
//
// The zero CallOptions make a call whose failure fails the whole operation
// (Dart's failOnCrash: true). CallOptions.Contained keeps a failure to the
// call: its frame goes, the operation goes on.
//
// # Failure
//
// When a call that is not contained fails, the failure (failedAt, reason,
// crashed call ids) is recorded in the ledger and the operation becomes
// failed and is archived, or goes to cleanup while frames of other calls
// are still active. In this process Failed closes, Failure tells
// why, Context is cancelled with an *OperationFailedError (which matches
// ErrOperationFailed), the other running calls get OnOperationFailed and
// OnCleanup, the temp resources registered by this process are deleted and
// every session's OnFailure runs.
//
// SetAbortFlag writes the abort flag; CheckAbort reads it. A process that
// sees the flag set is aborted, once: Aborted closes, OnAbort runs and
// Context is cancelled with ErrAborted. TriggerAbort aborts this process
// only, without writing the ledger. Clearing the flag does not undo an
// abort that a process has already seen.
//
// Errors are sentinels or typed errors to test with errors.Is and
// errors.As, never by their text. An id from outside that does not have the
// allowed form is ErrInvalidID (an *IDError), and nothing is written. A
// ledger file that does not parse, or whose operationId is not the one its
// name says, is ErrCorruptLedger (a *CorruptError naming the file); the
// file is left as it is for inspection, never replaced.
//
// # Files on disk
//
// The layout is the Dart ledger's, plus the liveness directory:
//
//	{base}/{id}.operation.json        state (JSON, 2-space indent)
//	{base}/{id}.operation.json.lock   flock target; never deleted
//	{base}/{id}.operation.log         "<RFC3339 UTC> [LEVEL] <participantId> <EVENT or message>"
//	{base}/{id}.operation.debug.log   DEBUG lines
//	{base}/{id}_trail/{elapsed ms}_{id}.json
//	{base}/{id}.live/                 liveness lock files
//	{base}/backup/{id}/               operation.json, operation.log, operation.debug.log, trail/
//
// Every change takes the flock, reads the state, writes a new temp file
// next to it and renames it over the state, so a process killed at any
// moment leaves the old state or the new one, never a torn one. With
// Options.Durable the temp file and the directory are fsynced as well, so
// a change also survives a power cut; without it a change survives the
// crash of any process, not of the machine. Log lines are appended with
// O_APPEND, one write per change; a message's line breaks are written as
// \n. Timestamps are written in RFC 3339 UTC with milliseconds; the Dart
// form without an offset is read as UTC.
//
// The trail keeps snapshots of the state (hard links to state files, which
// are never changed once written): at most one per HeartbeatInterval, from
// all processes together, and the newest Options.MaxTrail (100). Complete
// moves state, logs and trail to backup/{id}/ and removes the oldest
// backups beyond Options.MaxBackups (20).
//
// # Caveats
//
// Locks are flock(2) locks: a ledger directory on a network file system
// that does not support them is not safe to share. Lock files stay after
// their operation is archived (one empty file per operation), because
// deleting a lock file lets two processes lock different files.
//
// Each process keeps the last state it read or wrote per operation and
// decodes the file again only when its bytes differ; a change still reads
// the whole file, so its cost grows with the number of frames.
//
// Callbacks run on the goroutine that caused the event, after the ledger
// locks are released; a slow callback delays that goroutine. OnLogLine sees
// the lines this process writes, not those of others. Files are created
// with mode 0644 less the umask. Log files are not fsynced, even with
// Durable.
package ledger
