package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The environment variables a worker process receives (unless the worker
// sets NoLedgerEnv) and JoinFromEnv reads. Workers written in any language
// can use them to join the operation.
const (
	// EnvOperationID holds the id of the operation the worker works for.
	EnvOperationID = "LEDGER_OPERATION_ID"
	// EnvCallID holds the id of the orchestrator's call that runs the
	// worker, for the worker's logs.
	EnvCallID = "LEDGER_CALL_ID"
	// EnvBasePath holds the absolute ledger directory when the orchestrator
	// uses a local ledger.
	EnvBasePath = "LEDGER_BASE_PATH"
	// EnvServerURL holds the ledger server's URL when the orchestrator uses
	// a remote ledger; discovery tries it first.
	EnvServerURL = "LEDGER_SERVER_URL"
)

// Defaults of the worker fields.
const (
	// DefaultPollInterval is the default of FileWorker.PollInterval.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultKillGrace is the default of KillGrace: the time a worker's
	// process group gets between SIGTERM and SIGKILL. It is shorter than
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
	// process group is ended. Zero means DefaultKillGrace.
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
// The worker runs in a process group of its own, and on Linux it is killed
// (SIGKILL) should the orchestrator die first, even by SIGKILL (this
// reaches the worker only, not processes it started). Cancel, Leave with
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

// JoinFromEnv joins the operation named in the environment of a worker
// process started by ExecFileResultWorker or ExecStdioWorker (or by any
// program that sets the same variables). It connects with o, taking the
// ledger's location from EnvBasePath or EnvServerURL unless o sets
// BasePath or ServerURL (and a server's token from TokenEnv unless o sets
// Token, as Connect always does), and joins the operation EnvOperationID
// with jo.
// Without EnvOperationID it returns ErrNoWorkerEnv.
//
// The caller owns both results: it leaves the operation and closes the
// ledger when done. On error, nothing is left open.
func JoinFromEnv(ctx context.Context, o Options, jo JoinOptions) (Ledger, *Operation, error) {
	id := os.Getenv(EnvOperationID)
	if id == "" {
		return nil, nil, ErrNoWorkerEnv
	}
	if o.BasePath == "" && o.ServerURL == "" {
		o.BasePath, o.ServerURL = os.Getenv(EnvBasePath), os.Getenv(EnvServerURL)
	}
	l, err := Connect(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	op, err := l.JoinOperation(ctx, id, jo)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, op, nil
}

// ledgerLocator is implemented by backends that a worker process can reach
// too: it returns where the ledger is, as a directory or a server URL.
type ledgerLocator interface {
	ledgerLocation() (basePath, serverURL string)
}

// ledgerCredential is implemented by backends that need a credential to
// reach the ledger: a worker process gets it in its environment.
type ledgerCredential interface {
	ledgerToken() string
}

// ledgerToken implements ledgerCredential: the bearer token of the server
// (Options.Token, or $LEDGER_TOKEN), or "".
func (b *remoteBackend) ledgerToken() string { return b.token }


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

// environ returns the worker's environment.
func (s *workerSpec) environ(op *Operation, callID string) []string {
	env := os.Environ()
	if !s.noLedgerEnv {
		// Drop inherited values (this process may be a worker itself), so
		// that the worker sees this ledger only.
		env = dropEnv(env, EnvOperationID, EnvCallID, EnvBasePath, EnvServerURL)
		env = append(env, EnvOperationID+"="+op.ID(), EnvCallID+"="+callID)
		// Env naming either location names the ledger: adding the other
		// would give the worker both, which Connect rejects.
		if loc, ok := op.st.c.b.(ledgerLocator); ok && !setsEnv(s.env, EnvBasePath, EnvServerURL) {
			base, url := loc.ledgerLocation()
			if base != "" {
				env = append(env, EnvBasePath+"="+base)
			}
			if url != "" {
				env = append(env, EnvServerURL+"="+url)
			}
			// The token goes with this server's URL only: another
			// location named in Env must not receive it.
			if cred, ok := op.st.c.b.(ledgerCredential); ok {
				if token := cred.ledgerToken(); token != "" {
					env = append(dropEnv(env, TokenEnv), TokenEnv+"="+token)
				}
			}
		}
	}
	return append(env, s.env...)
}

// setsEnv reports whether env has an entry for one of keys.
func setsEnv(env []string, keys ...string) bool {
	return len(dropEnv(env, keys...)) != len(env)
}

// dropEnv returns env without the entries of keys.
func dropEnv(env []string, keys ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, key := range keys {
			drop = drop || k == key
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// stderrTail is how much of a worker's standard error is kept for its
// error.
const stderrTail = 4096

// process is one worker process and its process group, whose id is the
// process's pid. Three goroutines touch it: its owner (startWorker's
// goroutine, locked to its thread), the call's goroutine (run), and anyone
// who signals it (Kill, the CleanupHandler). The worker is reaped only once
// it has exited and its group has had its signals, so that the group id
// (the worker's pid) cannot be reused by then.
type process struct {
	spec   workerSpec
	cmd    *exec.Cmd
	stdout *lineWriter
	stderr *lineWriter

	exited  chan struct{} // closed when the process has exited; it is not reaped yet
	reap    chan struct{} // closed by run: the owner may reap the process
	done    chan struct{} // closed by the owner once the process is reaped
	waitErr error         // cmd.Wait's error; written before done closes
	swept   chan struct{} // closed by run once the rest of the group is dealt with

	abandon chan struct{} // closed KillGrace after the worker exited: hooks get no more lines
	failed  chan struct{} // closed by fail: the call fails with failErr, the group is ended
	// hooksOff is set once a hook panicked: no hook runs after that.
	hooksOff atomic.Bool

	mu      sync.Mutex // guards reaped, failErr
	reaped  bool       // no signal may be sent: the group id may be reused
	failErr error      // why the call fails although the worker may not (set once)
}

// fail makes the call fail with err (unless it failed already) and ends
// the worker's process group.
func (p *process) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failErr == nil {
		p.failErr = err
		close(p.failed)
	}
}

// failure of the process other than its exit, or nil.
func (p *process) failedWith() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failErr
}

// startWorker starts the worker process of call c, attaches it to c for
// Kill and to the CleanupHandler.
func startWorker[T any](spec workerSpec, op *Operation, c *SpawnedCall[T], keepStdout bool) (*process, error) {
	p := &process{
		spec:    spec,
		exited:  make(chan struct{}),
		reap:    make(chan struct{}),
		done:    make(chan struct{}),
		swept:   make(chan struct{}),
		abandon: make(chan struct{}),
		failed:  make(chan struct{}),
	}
	p.stdout = p.newLineWriter(spec.onStdout)
	if keepStdout {
		p.stdout.keepAll, p.stdout.maxAll = true, spec.maxOutput
		p.stdout.tooMuch = func() {
			p.fail(fmt.Errorf("%w: worker %s wrote more than %d bytes to its standard output", ErrWorkerOutputLimit, spec.path, spec.maxOutput))
		}
	}
	p.stderr = p.newLineWriter(spec.onStderr)
	p.stderr.tailMax = stderrTail
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = spec.environ(op, c.ID())
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.SysProcAttr = procAttr()
	// Wait returns at most this long after the process exited even when a
	// process outside the group still holds its output open.
	cmd.WaitDelay = spec.grace
	p.cmd = cmd
	started := make(chan error, 1)
	go p.own(started)
	if err := <-started; err != nil {
		return nil, fmt.Errorf("ledger: worker %s: %w", spec.path, err)
	}
	// The process owns these goroutines: run waits for them, up to
	// KillGrace after the worker exited (see lineWriter).
	for _, w := range []*lineWriter{p.stdout, p.stderr} {
		if w.hook != nil {
			go p.deliver(w)
		}
	}
	c.setKill(p.kill)
	return p, nil
}

// kill is the call's Kill: sig to the whole group, then, like every other
// way of ending a worker, SIGKILL KillGrace later if the worker has not
// exited by then.
func (p *process) kill(sig os.Signal) error {
	if err := p.signal(sig); err != nil {
		return err
	}
	if sig != syscall.SIGKILL {
		time.AfterFunc(p.spec.grace, func() {
			select {
			case <-p.exited:
			default:
				_ = p.signal(syscall.SIGKILL) // a no-op once reaped
			}
		})
	}
	return nil
}

// procAttr puts the worker in a process group of its own and, on Linux,
// has the kernel SIGKILL it when the thread that started it exits: with
// the orchestrator's death (the owner goroutine keeps the thread alive
// until the worker is reaped).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// own starts the process and owns it until it is reaped. The parent-death
// signal is bound to the OS thread that forks, not to the process, so this
// goroutine stays locked to its thread for the whole life of the worker.
func (p *process) own(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := p.cmd.Start(); err != nil {
		started <- err
		return
	}
	started <- nil
	waitExited(p.cmd.Process.Pid)
	close(p.exited)
	<-p.reap
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// waitExited waits until the child pid has exited without reaping it, so
// that its pid, which is also its process group's id, stays reserved while
// the rest of the group is dealt with.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return // exited, or (ECHILD) not ours to wait for: Wait reports it
		}
	}
}

// signal sends sig to the whole process group, and to the worker itself if
// it has left the group (setsid, setpgid), unless the worker has been
// reaped.
func (p *process) signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("%w: signal %v", ErrInvalidArgument, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	pid := p.cmd.Process.Pid
	err := syscall.Kill(-pid, s)
	if pg, perr := syscall.Getpgid(pid); perr == nil && pg != pid {
		// The worker is no longer in the group the first kill reached.
		err = syscall.Kill(pid, s)
	}
	return err
}

// end of a worker's run.
type runEnd int

const (
	endExited    runEnd = iota // the worker exited by itself
	endCancelled               // the call's context ended
	endTimedOut                // Timeout passed
	endLingered                // the file worker's result came, then KillGrace passed
	endFailed                  // fail was called (a hook panicked, too much output)
)

// run waits for the worker to end, ends its process group when the call's
// context ends, Timeout passes or it lingers after poll saw its result,
// reaps the worker, ends what is left of its group and runs OnExit. poll,
// if not nil, is called every poll interval until it returns true.
func (p *process) run(ctx context.Context, poll func() bool) (runEnd, *os.ProcessState, error) {
	end, abandon := p.supervise(ctx, poll)
	defer abandon.Stop()
	for _, w := range []*lineWriter{p.stdout, p.stderr} {
		w.flush()
	}
	for _, w := range []*lineWriter{p.stdout, p.stderr} {
		if w.hook != nil {
			select {
			case <-w.delivered:
			case <-p.abandon:
			}
		}
	}
	state := p.cmd.ProcessState
	if f := p.spec.onExit; f != nil && state != nil {
		f(state.ExitCode())
	}
	return end, state, p.waitErr
}

// supervise is the process-lifecycle part of run. Whatever happens in
// await (poll runs user code), the worker is ended, reaped and swept, and
// the CleanupHandler forgets it, before supervise returns or a panic
// leaves it.
//
// The worker has exited when await returns; KillGrace later the hooks are
// abandoned (the returned timer closes p.abandon), so that a hook that
// blocks cannot hold up the end of the call: exec's copying goroutines,
// which cmd.Wait waits for, then drop what they cannot queue.
func (p *process) supervise(ctx context.Context, poll func() bool) (end runEnd, abandon *time.Timer) {
	id := Cleanup().Register(p.cleanup)
	var deadline time.Time
	finished := false
	defer func() {
		if !finished {
			// await panicked (or called Goexit): the worker may still run.
			deadline = time.Now().Add(p.spec.grace)
			p.stop(deadline)
		}
		abandon = time.AfterFunc(p.spec.grace, func() { close(p.abandon) })
		p.mu.Lock()
		p.reaped = true
		p.mu.Unlock()
		close(p.reap)
		<-p.done
		p.sweep(deadline)
		close(p.swept)
		Cleanup().Unregister(id)
		if !finished {
			// run will not flush: end the delivery goroutines here.
			p.stdout.flush()
			p.stderr.flush()
		}
	}()
	end, deadline = p.await(ctx, poll)
	finished = true
	return end, nil // abandon is set by the deferred function
}

// await waits for the worker to exit, ending its group first when it must.
// Once the worker has exited, the rest of its group has had SIGTERM, and
// has until deadline.
func (p *process) await(ctx context.Context, poll func() bool) (runEnd, time.Time) {
	var timeout, lingered <-chan time.Time
	if p.spec.timeout > 0 {
		t := time.NewTimer(p.spec.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var tick <-chan time.Time
	if poll != nil {
		t := time.NewTicker(p.spec.poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		var end runEnd
		select {
		case <-p.exited:
			// Whatever the worker left behind in its group is ended too;
			// usually the group holds only the unreaped worker.
			_ = p.signal(syscall.SIGTERM)
			return endExited, time.Now().Add(p.spec.grace)
		case <-ctx.Done():
			end = endCancelled
		case <-timeout:
			end = endTimedOut
		case <-lingered:
			end = endLingered
		case <-p.failed:
			end = endFailed
		case <-tick:
			if poll() {
				tick = nil
				t := time.NewTimer(p.spec.grace)
				defer t.Stop()
				lingered = t.C
			}
			continue
		}
		deadline := time.Now().Add(p.spec.grace)
		p.stop(deadline)
		return end, deadline
	}
}

// stop sends SIGTERM to the process group, and SIGKILL at deadline if the
// worker still runs then. It returns once the worker has exited.
func (p *process) stop(deadline time.Time) {
	_ = p.signal(syscall.SIGTERM) // fails only once reaped
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = p.signal(syscall.SIGKILL)
		<-p.exited
	}
}

// cleanup is the worker's CleanupHandler callback: the orchestrator is
// about to die, so the worker's group is ended, within KillGrace and the
// context's deadline.
func (p *process) cleanup(ctx context.Context) error {
	deadline := time.Now().Add(p.spec.grace)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	p.stop(deadline)
	select {
	case <-p.swept:
	case <-ctx.Done():
		// Out of time: what is left of the group dies now (this must be
		// quick: the process is about to die). Before the worker is
		// reaped, signal makes sure of it under p.mu. Once it is reaped,
		// the group id is reserved only while the group has members, so
		// the group is signalled only while sweep has not yet seen it
		// empty (it looks every sweepPoll).
		if err := p.signal(syscall.SIGKILL); errors.Is(err, os.ErrProcessDone) {
			select {
			case <-p.swept:
			default:
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		}
	}
	return nil
}

// sweepPoll is how often sweep looks at what is left of a process group.
const sweepPoll = 10 * time.Millisecond

// sweep ends what is left of the worker's process group once the worker
// has been reaped. The group has had SIGTERM; whatever of it still runs at
// deadline gets SIGKILL. (While members are left the group id cannot be
// reused, so signalling it after the worker was reaped is safe.)
func (p *process) sweep(deadline time.Time) {
	pgid := p.cmd.Process.Pid
	if syscall.Kill(-pgid, 0) != nil {
		return // the group is gone (or out of reach): the common case
	}
	t := time.NewTicker(sweepPoll)
	defer t.Stop()
	for groupRunning(pgid) {
		if !time.Now().Before(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		<-t.C
	}
}

// groupRunning reports whether a process of group pgid is alive (not a
// zombie, as are members that have exited and wait for init to reap them).
// The kernel has no call for it (kill(-pgid, 0) counts zombies), so it
// reads /proc. When /proc cannot be read it says yes, so that the group is
// killed after its grace.
func groupRunning(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if state, pg, ok := parseStat(b); ok && pg == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// parseStat returns the state and process group of a /proc/<pid>/stat
// line: "pid (comm) state ppid pgrp ...", where comm may hold anything.
func parseStat(b []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}

// failure returns the *WorkerError of a worker that ended without a
// result.
func (p *process) failure(state *os.ProcessState, werr error, timedOut bool, missing string) error {
	e := &WorkerError{
		Executable: p.spec.path, ExitCode: -1, TimedOut: timedOut, MissingResultFile: missing,
		Stderr: p.stderr.tailText(),
	}
	if state != nil {
		e.ExitCode = state.ExitCode()
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal()
		}
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		e.Err = ee
	}
	return e
}

// maxLine is the longest line handed to OnStdout or OnStderr; a longer one
// is handed over in pieces.
const maxLine = 64 << 10

// hookQueue is how many lines of one stream may wait for their hook.
const hookQueue = 256

// lineWriter receives one output stream of a worker: it keeps all of the
// stream (keepAll) or its tail (tailMax bytes), and queues its lines for
// hook, which deliver calls on a goroutine of the process's own. exec's
// copying goroutine writes; run reads and flushes after the process is
// reaped (cmd.Wait returns once the copying is over). A full queue blocks
// the writer, and so the worker, until p.abandon: then lines are dropped.
type lineWriter struct {
	hook      func(string)
	queue     chan string   // lines for hook; closed by flush
	delivered chan struct{} // closed by deliver once the queue is drained
	abandon   <-chan struct{}
	keepAll   bool
	maxAll    int    // with keepAll: the most kept; beyond it, tooMuch is called
	tooMuch   func() // ends the worker; may be called more than once
	tailMax   int

	all      bytes.Buffer
	tail     []byte
	cut      bool   // tail lost its start: it may begin mid-line
	partial  []byte // an unfinished line
	dropping bool   // the hook was abandoned
}

// newLineWriter returns a lineWriter for hook (which may be nil).
func (p *process) newLineWriter(hook func(string)) *lineWriter {
	w := &lineWriter{hook: hook, abandon: p.abandon}
	if hook != nil {
		w.queue = make(chan string, hookQueue)
		w.delivered = make(chan struct{})
	}
	return w
}

func (w *lineWriter) Write(b []byte) (int, error) {
	if w.keepAll {
		if w.all.Len()+len(b) > w.maxAll {
			w.keepAll = false
			w.all = bytes.Buffer{} // the call fails: the output is of no use
			w.tooMuch()
		} else {
			w.all.Write(b)
		}
	}
	if w.tailMax > 0 {
		w.tail = append(w.tail, b...)
		if len(w.tail) > 2*w.tailMax {
			w.tail = append(w.tail[:0], w.tail[len(w.tail)-w.tailMax:]...)
			w.cut = true
		}
	}
	if w.hook == nil || w.dropping {
		return len(b), nil
	}
	w.partial = append(w.partial, b...)
	rest := w.partial
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.emit(rest[:i])
		rest = rest[i+1:]
	}
	for len(rest) >= maxLine {
		w.emit(rest[:maxLine])
		rest = rest[maxLine:]
	}
	w.partial = append(w.partial[:0], rest...)
	return len(b), nil
}

// flush queues an unfinished last line and closes the queue. No Write may
// follow.
func (w *lineWriter) flush() {
	if w.hook == nil {
		return
	}
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
	close(w.queue)
}

// emit queues a line, unless the hook has been abandoned.
func (w *lineWriter) emit(line []byte) {
	if w.dropping {
		return
	}
	select {
	case w.queue <- string(bytes.TrimSuffix(line, []byte("\r"))):
	case <-w.abandon:
		w.dropping = true
	}
}

// deliver hands the lines of w to its hook until the queue is closed.
// After a hook's panic, which fails the call, and once the hook has been
// abandoned, lines are dropped.
func (p *process) deliver(w *lineWriter) {
	defer close(w.delivered)
	for line := range w.queue {
		select {
		case <-p.abandon:
			continue
		default:
		}
		if !p.hooksOff.Load() {
			p.callHook(w.hook, line)
		}
	}
}

// callHook runs hook; a panic fails the call with a *PanicError (the
// first panic wins).
func (p *process) callHook(hook func(string), line string) {
	defer func() {
		if x := recover(); x != nil {
			p.hooksOff.Store(true)
			p.fail(&PanicError{Value: x, Stack: debug.Stack()})
		}
	}()
	hook(line)
}

// tailText returns the kept tail, starting at a line if it was cut, without
// the trailing line break.
func (w *lineWriter) tailText() string {
	t := w.tail
	if len(t) > w.tailMax || w.cut {
		t = t[max(len(t)-w.tailMax, 0):]
		if i := bytes.IndexByte(t, '\n'); i >= 0 && i < len(t)-1 {
			t = t[i+1:]
		}
	}
	return strings.TrimRight(string(t), "\r\n")
}
