// Package ledger coordinates long-running work that spans several
// processes: a shared, crash-safe record of who takes part in an operation,
// which calls are running, and whether the operation was aborted or failed.
// It is the Go port of the Dart package tom_dist_ledger: it keeps its names,
// its state document and its HTTP protocol, so Dart clients work with a Go
// server and Go reads and joins Dart ledger directories (see Dart
// interoperability).
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
// A ledger keeps each operation as a journal: an append-only sequence of
// records, each one change of its state, behind one seam, the interface
// journal.Store (package journal states the contract; package
// journal/journaltest checks a store against it). The rules that decide
// every change are one piece of code, run over the store by the process
// that opened it; a store only keeps records in order, wakes the readers,
// and holds the leases that prove participant processes alive.
//
// With Options.BasePath set, Connect returns a *LocalLedger over that
// directory, which any number of processes on the machine may share (see
// Files on disk). Open(store, opts) runs a ledger over any other
// journal.Store, such as the etcd store of module
// github.com/tomdist/ledger/etcd, or one of your own (ExampleOpen shows
// one that keeps its journals in memory). Otherwise Connect returns a
// *RemoteClient of a ledger server (see Remote), which runs the rules
// over its own store for its clients. Setting BasePath and ServerURL (or
// ServerURLs) is an error. Every backend gives the same behaviour and the
// same errors: everything users see (sessions, calls, heartbeats, crash
// handling, cleanup) is written once, over a small unexported interface
// that each backend implements.
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
// this process saw last. Data, CallFrame, Participant and TempResource
// hold what the state document holds, with the JSON keys of the Dart
// ledger. Values handed out are deep copies that the caller may keep and
// change.
//
// # Calls
//
// StartCall[T] is a package function, as Go has no generic methods. It
// writes a call frame (CALL_STARTED) and returns a *Call[T]; End(ctx,
// result) removes the frame (CALL_ENDED) and runs OnCompletion with the
// result; Fail(ctx, err) removes it (CALL_FAILED) and runs OnCleanup. A
// second End or Fail is ErrCallCompleted. An End or Fail that did not reach
// the ledger (a full disk, a lock timeout, a server that answered 500)
// leaves the call open, whatever the error: call it again. Only an answer
// proving the frame or the operation gone (ErrCallNotFound,
// ErrOperationNotFound, an *OperationFailedError, ErrOperationCompleted)
// ends the call without it. A spawned call retries its end by itself (see
// SpawnCall). Call ids have the form
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
// are still active. Whatever part of this process sees the failure first
// (Call.Fail, a spawned call, State, CheckAbort, SetAbortFlag or the
// monitor), it is taken in through one path: at once, before that method
// returns, Failure tells why and Context is cancelled with an
// *OperationFailedError (which matches ErrOperationFailed). Then, on a
// goroutine of the library, never the caller's, the calls that were
// running get OnOperationFailed and OnCleanup, the temp resources
// registered by this process are deleted and its frames marked cleaned up;
// then Failed closes and every session's OnFailure runs. So a Call.Fail
// returns at once however long those callbacks take; wait on Failed to
// know that this process has cleaned up.
//
// SetAbortFlag writes the abort flag; CheckAbort reads it. A process that
// sees the flag set is aborted, once: before the method that saw it
// returns, Aborted closes and Context is cancelled with ErrAborted; OnAbort
// runs on a goroutine of the library. TriggerAbort aborts this process
// only, without writing the ledger. Clearing the flag does not undo an
// abort that a process has already seen.
//
// # Spawned calls
//
// SpawnCall runs work in a goroutine the ledger owns, as a tracked call: the
// frame is written (CALL_SPAWNED) before the work starts, and the call ends
// by itself. A nil error is a success (frame removed, then OnCompletion, then
// Done). An error or a panic is a failure (a panic becomes a *PanicError and
// never crashes the process); OnCallCrashed may turn it into a success with a
// fallback; otherwise the call fails and, unless Contained, so does the
// operation: every participant's Failed closes and every running call hears
// OnOperationFailed. The work's context is cancelled with a cause
// (context.Cause): ErrCancelled (Cancel, Leave), ErrAborted, an
// *OperationFailedError, ErrOperationCompleted or ErrClosed; a work that
// returns an error after that is cancelled, not failed, and does not fail
// the operation.
//
// Sync (or SyncWith, for hooks) waits for calls of any result types through
// the Spawned interface and returns a SyncResult; when the operation fails
// first it returns at once, with the calls that did not finish in Unknown.
// WaitForCompletion races a plain function against the operation's
// failure. Leave refuses while calls run (ErrPendingCalls) unless asked to
// cancel them; Close cancels every spawned call and waits for it.
//
// # Liveness and crash cleanup
//
// One monitor goroutine per operation and process keeps this process
// alive in it and watches the others. It is woken, not timed: by the
// store's watch when the journal grows (an abort, a failure, a verdict, a
// completion), by the end of the lease of another participant process,
// and by its own heartbeat every HeartbeatInterval (with ±10% jitter),
// which proves this process alive and reads what the store knows of the
// others' beats. So a change that any participant records reaches the
// others as it is written, with nobody polling. Calls that start or end
// on a running operation, and log lines, are quiet changes
// (journal.Change.Quiet): they wake nobody, and a participant takes them
// in at its next read, leaving other processes' calls undecoded until it
// needs them, so that many processes making calls on one operation do
// not wake and slow each other.
//
// Every participant process that uses a store itself (a LocalLedger, a
// ledger from Open) holds a lease of the store from before it creates or
// joins until it leaves or dies. In a ledger directory the lease is a
// flock on the process's own file in {id}.live/, and the store wakes
// watchers by file system events (fsnotify on the directory). An observer
// on the same host keeps a goroutine blocked on that lock, which the
// kernel grants when the process dies: its death is seen at once, however
// it died. The directory is polled (every 100ms) only where events do not
// arrive: on a network file system (NFS, SMB, FUSE and the like, which do
// not deliver other machines' writes; recognised on Linux) or when no file
// system watch can be had; Options.PollDirectory makes a LocalLedger poll
// every LivenessPoll where it cannot be recognised. An etcd store's leases expire when their
// process stops keeping them alive, and are observed from every host. A
// participant through a server holds no lease: the server watches it
// through its stream (see Remote).
//
// A participant whose beat has not changed for its StaleThreshold plus
// 1.25 of its HeartbeatInterval (the longest gap between two beats of a
// healthy participant), measured on the observer's monotonic clock from
// when it last saw the value change, is declared crashed too: a process
// that hangs, or one on another host that a store cannot observe. Wall
// clocks that disagree never cause such a verdict (only the orphan sweep
// reads them, with a margin of a minute), and a process paused for less
// than its threshold is never declared crashed. Each participant
// is judged by its own settings: its record carries its HeartbeatInterval
// and StaleThreshold (heartbeatIntervalMs and staleThresholdMs, written on
// create and join), and a record without them, as the Dart ledger writes,
// has the defaults (5s and 15s). A heartbeat is a beat of the lease (in a
// ledger directory it touches the lease file, which needs no lock of the
// operation), not a change of the journal, so call traffic never makes a
// live participant stale; State shows the latest beat of each participant
// in its record.
//
// The first observer records the crash in one change (CRASH_DETECTED,
// detectionTimestamp, the participant and its frames crashed) and becomes
// the coordinator. A crashed frame of a Contained call is removed and the
// operation goes on. Otherwise the operation fails (CLEANUP_STARTED, state
// cleanup): every live participant runs OnOperationFailed and OnCleanup of
// its running calls, cancels its spawned calls, deletes its temp resources,
// marks its frames cleanedUp and runs OnFailure of its sessions. The
// coordinator deletes the crashed participant's temp resources, as far as
// the rule of Temporary files allows,
// and once every frame is cleaned up, or two heartbeat intervals have
// passed, removes the frames, sets the state failed (removalTimestamp,
// OPERATION_FAILED) and archives the operation. If the coordinator is gone,
// any participant finishes after the window. An operation whose
// participants all died is failed and archived by the next ledger that
// opens the store (a LocalLedger, or one from Open), and every
// StaleThreshold while one is open, and by a ledger server.
//
// Heartbeat does one beat by hand and returns a HeartbeatResult;
// OnHeartbeatSuccess and OnHeartbeatError (a *HeartbeatError of type
// ledgerNotFound, lockFailed, abortFlagSet (reported once), heartbeatStale
// or ioError) run on a goroutine of their own, so a slow callback never
// delays a beat; successes that pile up are coalesced to the latest.
// StopHeartbeat pauses the beats, liveness file touches included (the
// others will declare this process crashed after its threshold).
//
// Close settles each open operation: with no call of this process running
// its sessions leave; with a Call never ended, the process reports itself
// crashed, so the others react at once.
//
// # Signals and cleanup
//
// While an operation is open in the process, the ledger handles SIGINT and
// SIGTERM: it runs the callbacks registered with Cleanup().Register (newest
// first, for at most Options.SignalGrace, 5s by default), deletes the temp
// resources it registered with Operation.RegisterTempResource, marks this
// participant and its call frames crashed in every open operation so the
// other participants react at once (a call that fails on crash fails the
// operation), and then dies from the same signal, so a shell sees exit
// status 130 or 143. A second signal ends the process at once. When the
// last operation is left, completed or closed, the program's own signal
// behaviour is back; signals the program ignored stay ignored.
//
// A program that handles signals itself sets Options.NoSignalHandler and
// calls Cleanup().Run(ctx) from its handler: Run runs each callback once,
// newest first, deletes the temp resources and returns every error joined.
//
// # Temporary files
//
// RegisterTempResource records a file or directory to be deleted when the
// operation fails or its registrant is gone. A ledger is shared, by
// processes of several users and by clients of a server, so who deletes
// what is strict: a process deletes a temp resource only if its own user
// registered it, and never through a symbolic link.
//
//   - A process deletes the paths it registered itself, from its own list
//     in memory: when the operation fails, after SIGINT or SIGTERM, and in
//     Cleanup().Run, never following a symbolic link below their temp
//     root. It never deletes what the ledger lists in its name.
//   - When a participant process crashes, the coordinator deletes its temp
//     resources only if the coordinator is a LocalLedger on the same host,
//     and only the paths in the crashed process's temp registry: the file
//     {id}.live/{participant}.{pid}.temps that a LocalLedger writes on
//     every registration, with mode 0600, naming its operation,
//     participant, pid and host. The registry counts only if it is a
//     regular file with one link that the coordinator's own user owns and
//     nobody else may write, and names the process it stands for. The
//     orphan sweep of a LocalLedger does the same for the processes of an
//     orphaned operation.
//   - Every such path must lie below one of the deleter's
//     Options.TempRoots (the system temp directory by default; registering
//     a path outside them is refused with ErrInvalidArgument), compared by
//     the cleaned absolute names, and belong to the deleting user. Every
//     directory from the root down is opened without following a symbolic
//     link, and the tree is removed through those descriptors; a link at
//     the path is removed, not followed.
//   - The tempResources list in the ledger is never a reason to delete
//     anything: whoever can write the directory or reach a ledger server
//     can write it. Paths registered through a server are recorded with
//     registeredVia "server" and deleted by their registrant alone; the
//     server deletes nothing.
//
// A participant that leaves, completes or closes normally forgets its
// temp resources: its registry is removed, and nobody deletes them after.
//
// # Worker processes
//
// ExecStdioWorker and ExecFileResultWorker run an external program as a
// spawned call: its frame is in the ledger while the program runs, and the
// result is decoded from the program's standard output or from the file it
// writes (JSON by default; the text for string, the bytes for []byte). A
// non-zero exit, a missing result file or a Timeout fails the call with a
// *WorkerError carrying the exit status and the tail of standard error; a
// decode error fails it wrapping the decoder's error. Each worker runs in a
// process group of its own. Cancel, abort, the failure or completion of the
// operation, Leave with CancelPendingCalls, Close and Timeout end the whole
// group: SIGTERM, then SIGKILL after KillGrace. The worker is always
// reaped, and on Linux, FreeBSD and Windows it dies with the orchestrator,
// even when the orchestrator is killed with SIGKILL (not on macOS; the
// README's Platforms section says what each system gives). The worker's
// environment names the operation and the ledger (LEDGER_OPERATION_ID,
// LEDGER_CALL_ID, and LEDGER_BASE_PATH, LEDGER_SERVER_URL or, over a store
// that is a StoreLocator, LEDGER_STORE and the store's own variables), so
// a Go worker joins with JoinFromEnv (or the store's own, such as
// etcd.JoinFromEnv) and runs tracked calls of its own. Use Cancel,
// not Kill, to stop a worker without failing the operation.
//
// # Remote
//
// NewServer serves a ledger directory (ServerOptions.BasePath), or any
// journal.Store (ServerOptions.Store), over HTTP, with the Dart server's
// paths and field names; `ledger serve` runs it. The server runs the
// rules for its clients over its store, and keeps no state per client but
// caches and open streams: every request names its participant and the
// journal position the client has seen, and is answered with the records
// the client has not seen, so restarting the server loses nothing. It
// listens on loopback unless told otherwise, requires a bearer token
// beyond loopback, and answers errors as {"error", "code"}; the
// RemoteClient maps the codes back to the sentinels of this package, so
// errors.Is works the same on every backend, and anything else is a
// *RemoteError. Without ServerURL, ServerURLs or BasePath, Connect
// discovers a server: $LEDGER_SERVER_URL, then 127.0.0.1 and localhost on
// Options.Discovery.Ports, then, only with Discovery.ScanSubnet, the local
// /24; nothing found is ErrNoServer.
//
// A RemoteClient follows each open operation through one stream of
// server-sent events, which the server pushes each change into as it is
// written; a dropped stream is opened again, with backoff, from the last
// position received. The stream is also the participant's proof of life:
// when it drops and no stream of the participant comes back within
// ServerOptions.StreamGrace (1s), the server declares the participant
// crashed, unless it has left, so a remote participant that is killed is
// seen within about a second. One that hangs with its stream open is
// judged by its heartbeats, which the server records for it. Where the
// server, or a proxy before it, cannot stream, the client reads the state
// every Options.LivenessPoll instead.
//
// Every request of a RemoteClient that goes through the rules (each
// change, heartbeat and read of the state) carries an idempotency key,
// and every request is retried, changes too, after a connection error, an attempt
// that ran past Options.RequestTimeout, or a 503 of a server that is
// starting or stopping: up to DefaultRetryAttempts (8) times with a
// doubling pause, as Options.Retry (a RetryPolicy) says. A change the
// server made before the answer was lost is recognised by its key and
// answered, not made again. With several servers of one store
// (Options.ServerURL and ServerURLs, such as several `ledger serve
// --etcd` fronts), the client uses one and moves to the next when a
// request or its stream cannot reach it, resending the request with the
// same key.
//
// # Dart interoperability
//
// The server also serves the Dart RemoteLedgerClient, whose requests carry
// no journal position: it answers them as the Dart server did. Its
// requests after create and join do not say who sends them; they act for
// the participant that created or first joined the operation with a Dart
// request, which the state records (Data.DartParticipant), so another
// server over the same store acts for the same one. A Dart client sends
// no heartbeat settings: ServerOptions.Dart gives those it is judged by.
// A LocalLedger reads the operations of a Dart ledger directory, and joins
// them: an {id}.operation.json without a journal reads as a snapshot, and
// the first change gives it a journal that starts from it. The README's
// Dart sections say exactly what works and what does not.
//
// # Errors
//
// Errors are sentinels or typed errors to test with errors.Is and
// errors.As, never by their text. An id from outside that does not have the
// allowed form is ErrInvalidID (an *IDError), and nothing is written. A
// journal with a record that fails its checksum before its end, or a Dart
// state document that does not parse or lacks a required field, is
// ErrCorruptLedger (a *CorruptError naming the file); the file is left as
// it is for inspection, never replaced. The ledger never follows a
// symbolic link inside its directory.
//
// # Watching
//
// A Viewer reads a ledger without taking part in it: NewViewer over a
// journal.Store, OpenViewer for a ledger directory, ConnectViewer for a
// directory or a server; its Watch and WatchList are pushed by the store
// or the server's stream, never polled. The server serves a dashboard at
// /ui and Prometheus metrics at /metrics, under the access rule of its
// protocol; the ledger command (`ledger ls`, `show`, `watch`, `log -f`)
// reads either. Options.Logger receives the library's own diagnostics
// (heartbeat errors, crash verdicts, retried requests, stream reconnects)
// through log/slog; nil stays silent.
//
// # Files on disk
//
// A ledger directory keeps the names of the Dart ledger, plus the journal,
// the liveness directory and a directory for temp files:
//
//	{base}/{id}.operation.journal     the truth: a header, a snapshot, then records
//	{base}/{id}.operation.json        the state document (JSON, 2-space indent), derived
//	{base}/{id}.operation.lock        flock target; removed with the operation
//	{base}/{id}.operation.json.lock   the Dart ledger's lock file: honoured, never deleted (README, Dart interoperability)
//	{base}/{id}.operation.log         "<RFC3339 UTC> [LEVEL] <participantId> <EVENT or message>", derived
//	{base}/{id}.operation.debug.log   DEBUG lines, derived
//	{base}/{id}_trail/{elapsed ms}_{id}.json
//	{base}/{id}.live/                 lease files, beat files and temp registries
//	{base}/backup/{id}/               operation.journal, operation.json, operation.log, operation.debug.log, trail/
//	{base}/~ledger-tmp/               where the journals and state documents are written before they are renamed into place
//
// The journal is framed: one line per record, each with its CRC-32C.
// Every change takes the operation's flock, reads the records after the
// writer's position, decides, and appends its records in one O_APPEND
// write; a write torn by a kill can only be a tail without its newline,
// which the next writer cuts off under the lock, and readers, who take no
// lock, stop before it. So a process killed at any moment leaves the
// journal as it was before its change or after it. With Options.Durable
// the journal is fdatasynced before the change returns (writers queued
// behind the lock share a sync), and renamed files and directories are
// synced, so a change also survives a power cut; without it a change
// survives the crash of any process, not of the machine.
//
// After a number of records that grows with the size of the state (at
// least 256), a change compacts the journal: it is rewritten to start
// with a snapshot of the state, and the state document is written, with a
// trail snapshot (a hard link to it, the newest Options.MaxTrail kept).
// The state document is derived: written when the operation is created,
// at each compaction and at archive, for people and for Dart readers;
// Viewer.Document and `ledger show --json` give the current one at any
// time. The logs are derived from the records too: each record carries
// its log lines, which are appended to the logs after the journal; a log
// that is shorter than the journal says (its writer was killed between
// the two) gets the missing lines from the next writer, and ReadLog adds
// them meanwhile. Log lines are written with O_APPEND; a message's
// line breaks are written as \n. Timestamps are written in RFC 3339 UTC
// with milliseconds; the Dart form without an offset (a local time) is
// read in the local zone. Complete, or the end of a failure, moves the
// journal, state, logs and trail to backup/{id}/ and removes the oldest
// backups beyond Options.MaxBackups (20).
//
// # Caveats
//
// Locks are flock(2) locks: a ledger directory on a network file system
// that does not support them is not safe to share. A lock file is removed,
// under its lock, once its operation is archived or found gone; a process
// that was waiting for it sees that the file it locked is no longer the
// one at its path and starts again. Processes of versions before the
// journal, which read and write only the state document, must not share a
// directory with this one.
//
// Each process keeps the state of the operations it uses and reads only
// the records it has not seen, and a change writes only its own records;
// deciding a change still copies the state in memory, so its cost grows
// with the number of frames, slowly. Compaction writes the whole state,
// and is spaced out in proportion to it.
//
// Callbacks run with no lock held, on a goroutine of the library: a
// call's own callbacks on the goroutine that ends it (the caller's, for
// End and Fail of a Call), those of heartbeat, abort and failure events on
// goroutines of their own; a slow callback delays that goroutine only, and
// Close waits for it. OnLogLine sees
// the lines this process writes, not those of others. Files are created
// with mode 0644 less the umask. Log files are not fsynced, even with
// Durable.
package ledger
