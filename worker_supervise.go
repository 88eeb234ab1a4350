package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one worker process and its group: on Unix its process group,
// whose id is the process's pid; on Windows its job object (see
// procGroup). Three goroutines touch it: its owner (startWorker's
// goroutine, locked to its thread where the parent-death signal needs
// it), the call's goroutine (run), and anyone who signals it (Kill, the
// CleanupHandler). The worker is reaped only once it has exited and its
// group has had its signals, so that the group id (the worker's pid)
// cannot be reused by then.
//
// The platform files provide procGroup and, as methods of process,
// prepare, attach, waitExited, signal, groupRunning, killGroup, release
// and exitSignal.
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

	mu      sync.Mutex // guards reaped, failErr, group
	reaped  bool       // no signal may be sent: the group id may be reused
	failErr error      // why the call fails although the worker may not (set once)
	group   procGroup  // what the platform keeps of the group
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
	// Wait returns at most this long after the process exited even when a
	// process outside the group still holds its output open.
	cmd.WaitDelay = spec.grace
	p.cmd = cmd
	if err := p.prepare(); err != nil {
		return nil, fmt.Errorf("ledger: worker %s: %w", spec.path, err)
	}
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

// own starts the process and owns it until it is reaped. Where the
// parent-death signal is bound to the OS thread that forks, not to the
// process (Linux: pinThread), this goroutine stays locked to its thread
// for the whole life of the worker.
func (p *process) own(started chan<- error) {
	if pinThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if err := p.cmd.Start(); err != nil {
		p.release()
		started <- err
		return
	}
	if err := p.attach(); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.release()
		started <- err
		return
	}
	started <- nil
	p.waitExited()
	close(p.exited)
	<-p.reap
	p.waitErr = p.cmd.Wait()
	close(p.done)
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
		code, _ := p.exitStatus(state)
		f(code)
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
		p.release()
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
				p.killGroup()
			}
		}
	}
	return nil
}

// sweepPoll is how often sweep looks at what is left of a process group.
const sweepPoll = 10 * time.Millisecond

// sweep ends what is left of the worker's group once the worker has been
// reaped. The group has had SIGTERM; whatever of it still runs at deadline
// gets SIGKILL. (On Unix, while members are left the group id cannot be
// reused, so signalling it after the worker was reaped is safe.)
func (p *process) sweep(deadline time.Time) {
	if !p.groupRunning() {
		return // the group is gone (or out of reach): the common case
	}
	t := time.NewTicker(sweepPoll)
	defer t.Stop()
	for time.Now().Before(deadline) {
		<-t.C
		if !p.groupRunning() {
			return
		}
	}
	p.killGroup()
}

// failure returns the *WorkerError of a worker that ended without a
// result.
func (p *process) failure(state *os.ProcessState, werr error, timedOut bool, missing string) error {
	e := &WorkerError{
		Executable: p.spec.path, ExitCode: -1, TimedOut: timedOut, MissingResultFile: missing,
		Stderr: p.stderr.tailText(),
	}
	if state != nil {
		e.ExitCode, e.Signal = p.exitStatus(state)
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		e.Err = ee
	}
	return e
}

// exitStatus returns the exit status of the reaped worker and the signal
// that ended it, or -1 and the signal if one did (see exitSignal).
func (p *process) exitStatus(state *os.ProcessState) (int, os.Signal) {
	if sig := p.exitSignal(state); sig != nil {
		return -1, sig
	}
	return state.ExitCode(), nil
}
