package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
)

// Defaults of the worker fields.
const (
	// DefaultPollInterval is the default of FileWorker.PollInterval.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultKillGrace is the default of KillGrace: the time a worker's
	// process group gets between SIGTERM and SIGKILL (on Windows, between
	// a Ctrl+Break and the job's termination). It is shorter than
	// DefaultSignalGrace, so that a signalled orchestrator ends its workers
	// before it dies.
	DefaultKillGrace = 3 * time.Second
	// DefaultMaxOutput is the default of StdioWorker.MaxOutput: 64 MiB.
	DefaultMaxOutput = 64 << 20
)

// Process describes the program of a worker process and how it runs:
// what FileWorker and StdioWorker have in common, embedded in both.
// Executable is required; every other field may be left zero.
type Process struct {
	// Executable is the program: a path, or a name looked up in PATH as
	// exec.Command does.
	Executable string
	// Args are the arguments, without the program name.
	Args []string
	// Dir is the working directory of the worker. Zero means the working
	// directory of this process.
	Dir string
	// Env holds extra "KEY=value" entries. The worker gets the environment
	// of this process, then the ledger variables, then Env; a later entry
	// wins, except that when Env sets EnvBasePath or EnvServerURL, neither
	// is added (so that the worker is not given two locations). Zero adds
	// nothing.
	Env []string
	// NoLedgerEnv keeps EnvOperationID, EnvCallID, EnvBasePath,
	// EnvServerURL and TokenEnv as they are in this process's environment.
	// Zero means they are set so that the worker can join with
	// JoinFromEnv.
	NoLedgerEnv bool

	// Timeout bounds the worker's run; when it passes, the worker's process
	// group is ended and the call fails with a *WorkerError matching
	// ErrWorkerTimeout. Zero means no limit.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL when the worker's
	// process group is ended (on Windows, between a Ctrl+Break and the
	// job's termination). Zero means DefaultKillGrace.
	KillGrace time.Duration
	// OnStdout receives each line the worker writes to its standard output,
	// without the line break, as it comes (a stdio worker's result is
	// decoded from the whole output at the end). See ExecStdioWorker for
	// how hooks run.
	OnStdout func(line string)
	// OnStderr receives each line the worker writes to its standard error,
	// without the line break.
	OnStderr func(line string)
	// OnExit receives the exit status once the worker process has been
	// reaped: -1 when a signal ended it.
	OnExit func(code int)
}

// spec returns the workerSpec of w for the worker struct kind.
func (w *Process) spec(kind string) workerSpec {
	return workerSpec{
		kind: kind, path: w.Executable, args: w.Args, dir: w.Dir, env: w.Env, noLedgerEnv: w.NoLedgerEnv,
		timeout: w.Timeout, grace: w.KillGrace,
		onStdout: w.OnStdout, onStderr: w.OnStderr, onExit: w.OnExit,
	}
}

// FileWorker describes a worker process that writes its result to a file,
// for ExecFileResultWorker. Executable and ResultFile are required; every
// other field may be left zero.
type FileWorker[T any] struct {
	// Process is the program and how it runs.
	Process

	// ResultFile is where the worker writes its result. A relative path is
	// relative to Dir, so that the worker and the orchestrator mean the
	// same file. A file already there when the worker starts is removed:
	// a leftover must not pass for this run's result.
	ResultFile string
	// KeepResultFile leaves the result file in place. Zero means it is
	// deleted once read, or when the call is cancelled or times out (Dart's
	// deleteResultFile: true). A file that does not decode is always kept,
	// for inspection.
	KeepResultFile bool
	// Decode turns the content of the result file into the result. Zero
	// means encoding/json, except that a string result is the text itself
	// without trailing line breaks, and a []byte result the bytes. A
	// panic in Decode is a decode failure whose error carries a
	// *PanicError.
	Decode func(data []byte) (T, error)
	// PollInterval is how often the result file is looked for while the
	// worker runs. Zero means DefaultPollInterval.
	PollInterval time.Duration

	// CallOptions are those of the call that runs the worker. A zero
	// Description means the executable's base name.
	CallOptions[T]
}

// StdioWorker describes a worker process that writes its result to its
// standard output, for ExecStdioWorker. Executable is required; every other
// field may be left zero.
type StdioWorker[T any] struct {
	// Process is the program and how it runs.
	Process

	// MaxOutput bounds the standard output held in memory, in bytes: a
	// worker that writes more is ended (its whole process group) and the
	// call fails with an error matching ErrWorkerOutputLimit. Zero means
	// DefaultMaxOutput.
	MaxOutput int

	// Decode turns the worker's whole standard output, which is held in
	// memory, into the result. Zero means encoding/json, except that a
	// string result is the text itself without trailing line breaks, and
	// a []byte result the bytes.
	Decode func(data []byte) (T, error)

	// CallOptions are those of the call that runs the worker. A zero
	// Description means the executable's base name.
	CallOptions[T]
}

// ExecFileResultWorker runs an external program as a spawned call (see
// SpawnCall) whose result the program writes to w.ResultFile, and returns
// at once.
//
// While the worker runs, the file is looked for every w.PollInterval. Once
// it is there, has not changed for one interval, and decodes, the call has
// its result: the worker should exit right after writing it (write a
// temporary file in the same directory and rename it, so that the file
// never appears half-written), and one still running w.KillGrace later is
// ended as ExecStdioWorker describes. When the worker exits first, the file
// is read then; the exit status does not matter when the file is there and
// decodes. A worker that exits without writing the file fails the call at
// once with a *WorkerError giving its exit status and the tail of its
// standard error. A file that does not decode fails the call with an error
// wrapping Decode's.
//
// Everything else (the process group, ending, signals, the environment)
// is as for ExecStdioWorker.
func ExecFileResultWorker[T any](op *Operation, w FileWorker[T]) *SpawnedCall[T] {
	spec := w.spec("FileWorker")
	spec.poll = w.PollInterval
	opts := workerCallOptions(w.CallOptions, w.Executable)
	if err := spec.check(); err != nil {
		return invalidWorker(op, opts, "ExecFileResultWorker", err)
	}
	if w.ResultFile == "" {
		return invalidWorker(op, opts, "ExecFileResultWorker", errors.New("FileWorker.ResultFile is empty"))
	}
	rf := resultFile[T]{path: w.ResultFile, keep: w.KeepResultFile, decode: decoder(w.Decode)}
	if !filepath.IsAbs(rf.path) && w.Dir != "" {
		rf.path = filepath.Join(w.Dir, rf.path)
	}
	return SpawnCall(op, func(ctx context.Context, c *SpawnedCall[T]) (T, error) {
		var zero T
		if ctx.Err() != nil {
			return zero, context.Cause(ctx) // no process for a call already cancelled
		}
		if err := os.Remove(rf.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return zero, fmt.Errorf("ledger: worker %s: removing an old result file: %w", spec.path, err)
		}
		p, err := startWorker(spec, op, c, false)
		if err != nil {
			return zero, err
		}
		end, state, werr := p.run(ctx, rf.poll)
		switch {
		case end == endCancelled:
			rf.remove()
			return zero, context.Cause(ctx)
		case p.failedWith() != nil:
			rf.remove()
			return zero, p.failedWith()
		case rf.taken:
			rf.remove()
			return rf.value, nil
		case end == endTimedOut:
			rf.remove()
			return zero, p.failure(state, werr, true, "")
		}
		v, found, err := rf.read()
		switch {
		case !found:
			return zero, p.failure(state, werr, false, rf.path)
		case err != nil:
			return zero, fmt.Errorf("ledger: worker %s: result file %s: %w", spec.path, rf.path, err)
		}
		rf.remove()
		return v, nil
	}, opts)
}

// ExecStdioWorker runs an external program as a spawned call (see
// SpawnCall) whose result the program writes to its standard output, and
// returns at once. The call succeeds when the program exits with status 0
// and Decode accepts the whole output; a non-zero exit (or a signal) fails
// it with a *WorkerError giving the status and the tail of the program's
// standard error, and a decode error fails it with an error wrapping
// Decode's. The program's standard input is empty.
//
// The worker runs in a process group of its own. On Linux and FreeBSD it
// is killed (SIGKILL, the parent-death signal) should the orchestrator die
// first, even by SIGKILL (this reaches the worker only, not processes it
// started); on macOS nothing does that. On Windows the group is a job
// object holding the worker and everything it starts, and the whole job
// dies with the orchestrator, however it dies. Cancel, Leave with
// CancelPendingCalls, abort, the failure or completion of the operation,
// Close and Timeout end the whole group: SIGTERM, then SIGKILL to what is
// left after KillGrace. Members of the group still running when the worker
// exits on its own are ended the same way, and a process outside the group
// that holds the output open delays the end of the call by at most
// KillGrace. While the worker runs, the process-wide CleanupHandler (its
// signal handler and Run) ends the group too. The worker is always reaped:
// no zombie is left. A worker ended for a cancellation makes the call
// cancelled, not failed.
//
// Kill sends a signal to the whole process group; the call's outcome is
// then what the worker does with it (a worker that dies from it fails the
// call). Use Cancel to stop a worker without failing the operation.
//
// Windows has no signals: SIGTERM is a Ctrl+Break sent to the worker's
// console process group (a Go worker sees os.Interrupt), or, when this
// process has no console to share with the worker, the job's termination
// at once; SIGKILL is the termination of the job (exit status 137, which
// a *WorkerError reports as os.Kill). Kill takes os.Interrupt and
// syscall.SIGTERM (Ctrl+Break) and os.Kill there. See the README's
// Platforms section for what each system gives.
//
// Unless w.NoLedgerEnv, the worker's environment holds EnvOperationID,
// EnvCallID and the ledger's location (EnvBasePath for a local ledger,
// EnvServerURL for a RemoteClient, with TokenEnv holding its token if it
// has one), so that it can take part in the operation with JoinFromEnv.
//
// OnStdout and OnStderr run on goroutines of their own (each sees its lines
// in order; the two may run at the same time), fed through a bounded queue:
// a hook slower than the output makes the worker wait on a full pipe. A hook
// that blocks does not stop Cancel, Timeout or Close from ending the call:
// KillGrace after the worker has exited, its remaining lines are dropped,
// and the call ends without waiting for the hook to return (its goroutine
// ends when it does). A hook that panics fails the call with a *PanicError
// (the first panic wins), ends the worker's process group, and no hook is
// called after it. OnExit runs on the call's goroutine, before the call
// ends; a panic in it, or in Decode, fails the call with a *PanicError.
//
// An invalid w (no Executable, a negative duration) or a nil op gives a
// call that has already failed with ErrInvalidArgument, as SpawnCall does.
func ExecStdioWorker[T any](op *Operation, w StdioWorker[T]) *SpawnedCall[T] {
	spec := w.spec("StdioWorker")
	spec.maxOutput = w.MaxOutput
	opts := workerCallOptions(w.CallOptions, w.Executable)
	if err := spec.check(); err != nil {
		return invalidWorker(op, opts, "ExecStdioWorker", err)
	}
	if spec.maxOutput < 0 {
		return invalidWorker(op, opts, "ExecStdioWorker", fmt.Errorf("StdioWorker.MaxOutput (%d) must not be negative", spec.maxOutput))
	}
	if spec.maxOutput == 0 {
		spec.maxOutput = DefaultMaxOutput
	}
	decode := decoder(w.Decode)
	return SpawnCall(op, func(ctx context.Context, c *SpawnedCall[T]) (T, error) {
		var zero T
		if ctx.Err() != nil {
			return zero, context.Cause(ctx) // no process for a call already cancelled
		}
		p, err := startWorker(spec, op, c, true)
		if err != nil {
			return zero, err
		}
		end, state, werr := p.run(ctx, nil)
		switch {
		case end == endCancelled:
			return zero, context.Cause(ctx)
		case p.failedWith() != nil:
			return zero, p.failedWith()
		case end == endTimedOut || state == nil || !state.Success():
			return zero, p.failure(state, werr, end == endTimedOut, "")
		}
		v, err := decode(p.stdout.all.Bytes())
		if err != nil {
			return zero, fmt.Errorf("ledger: worker %s: decoding its standard output: %w", spec.path, err)
		}
		return v, nil
	}, opts)
}

// workerCallOptions fills in the default description.
func workerCallOptions[T any](opts CallOptions[T], exe string) CallOptions[T] {
	if opts.Description == "" {
		opts.Description = filepath.Base(exe)
	}
	return opts
}

// invalidWorker returns a call that failed to start with err.
func invalidWorker[T any](op *Operation, opts CallOptions[T], fn string, err error) *SpawnedCall[T] {
	if op == nil {
		err = errors.New("nil *Operation")
	}
	return newSpawnedCall(op, opts).failToStart(fmt.Errorf("%w: %s: %v", ErrInvalidArgument, fn, err))
}

// decoder returns f, or the default decoder for T.
func decoder[T any](f func([]byte) (T, error)) func([]byte) (T, error) {
	if f != nil {
		return f
	}
	var zero T
	switch any(zero).(type) {
	case string:
		return func(b []byte) (T, error) {
			return any(strings.TrimRight(string(b), "\r\n")).(T), nil
		}
	case []byte:
		return func(b []byte) (T, error) {
			return any(bytes.Clone(b)).(T), nil
		}
	}
	return func(b []byte) (T, error) {
		var v T
		err := json.Unmarshal(b, &v)
		return v, err
	}
}

// resultFile is the result file of one run of a file worker. Only the
// call's goroutine uses it.
type resultFile[T any] struct {
	path   string
	keep   bool
	decode func([]byte) (T, error)

	taken bool // value holds the result, read while the worker ran
	value T
	last  os.FileInfo // the file at the last poll, or nil
	tried bool        // last was read, and did not decode
}

// poll reports whether the file holds the result: it reads the file once
// it is there and has not changed since the last poll, and it decodes. A
// file that does not decode may still be being written: poll tries again
// when it changes, and the final read, after the worker has exited,
// decides.
func (r *resultFile[T]) poll() bool {
	fi, err := os.Stat(r.path)
	if err != nil {
		r.last = nil
		return false
	}
	if r.last == nil || fi.Size() != r.last.Size() || !fi.ModTime().Equal(r.last.ModTime()) {
		r.last, r.tried = fi, false
		return false
	}
	if r.tried {
		return false
	}
	r.tried = true
	v, found, err := r.read()
	if !found || err != nil {
		return false
	}
	r.taken, r.value = true, v
	return true
}

// read reads and decodes the file; found is false when there is no file.
func (r *resultFile[T]) read() (v T, found bool, err error) {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, true, err
	}
	if v, err = r.safeDecode(b); err != nil {
		return v, true, fmt.Errorf("decoding: %w", err)
	}
	return v, true, nil
}

// safeDecode runs decode; a panic in it is a decode failure carrying a
// *PanicError, so that a faulty decoder cannot escape the worker's
// supervision.
func (r *resultFile[T]) safeDecode(b []byte) (v T, err error) {
	defer func() {
		if x := recover(); x != nil {
			var zero T
			v, err = zero, &PanicError{Value: x, Stack: debug.Stack()}
		}
	}()
	return r.decode(b)
}

// remove deletes the file unless it is to be kept.
func (r *resultFile[T]) remove() {
	if !r.keep {
		_ = os.Remove(r.path) // best effort: a missing file is fine
	}
}

// workerSpec is what the two kinds of worker have in common.
type workerSpec struct {
	kind               string // the struct's name, for errors
	path               string
	args, env          []string
	dir                string
	noLedgerEnv        bool
	poll               time.Duration
	timeout, grace     time.Duration
	onStdout, onStderr func(string)
	onExit             func(int)
	maxOutput          int // the stdio worker's MaxOutput, defaulted
}

// check validates the spec and fills in the defaults.
func (s *workerSpec) check() error {
	if s.path == "" {
		return fmt.Errorf("%s.Executable is empty", s.kind)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"PollInterval", &s.poll, DefaultPollInterval},
		{"Timeout", &s.timeout, 0},
		{"KillGrace", &s.grace, DefaultKillGrace},
	} {
		if *d.v < 0 {
			return fmt.Errorf("%s.%s (%v) must not be negative", s.kind, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return nil
}
