package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// Spawned is the view of a *SpawnedCall[T] that does not depend on T, so
// that Sync can wait for calls with different result types. Only
// *SpawnedCall[T] implements it.
type Spawned interface {
	// ID returns the call id.
	ID() string
	// Description returns the description given to SpawnCall.
	Description() string
	// StartedAt returns when the call was spawned.
	StartedAt() time.Time
	// Done returns a channel that is closed once the call has ended and
	// its callbacks have run.
	Done() <-chan struct{}
	// Err returns why the call did not succeed: nil while it runs and
	// after success.
	Err() error
	// IsCompleted reports whether the call has an outcome.
	IsCompleted() bool
	// IsSuccess reports whether the work returned a result (or
	// OnCallCrashed gave a fallback).
	IsSuccess() bool
	// IsFailed reports whether the call failed.
	IsFailed() bool
	// IsCancelled reports whether the work was cancelled before it
	// finished.
	IsCancelled() bool
	// Cancel cancels the work's context with cause ErrCancelled.
	Cancel()
	// Kill sends sig to the process attached to the call.
	Kill(sig os.Signal) bool

	// valid reports whether the call came from SpawnCall.
	valid() bool
}

// callState is the outcome of a spawned call.
type callState int

const (
	callRunning callState = iota
	callSucceeded
	callFailed
	callCancelled
)

// errGoexit is the error of a work function that called runtime.Goexit
// (t.FailNow, for example) instead of returning.
var errGoexit = errors.New("ledger: work called runtime.Goexit")

// SpawnedCall is a tracked call whose work runs in a goroutine the ledger
// owns: SpawnCall writes its frame, starts the work and ends the call with
// the work's outcome. A *SpawnedCall is safe for concurrent use. It must
// not be copied. The zero value is not a call: it never completes, and
// Sync rejects it; calls come from SpawnCall.
type SpawnedCall[T any] struct {
	op      *Operation
	id      string
	opts    CallOptions[T]
	started time.Time
	done    chan struct{}           // closed once the outcome is final and its callbacks ran
	cancel  context.CancelCauseFunc // cancels the work's context; nil if the work never started

	// failOnce runs OnOperationFailed at most once, and makes a second
	// caller wait until it has run.
	failOnce sync.Once

	mu      sync.Mutex // guards the fields below
	state   callState
	result  T
	err     error
	kill    func(os.Signal) error // signals the attached process; nil if none
	cleaned bool                  // OnCleanup has run
}

// SpawnCall starts a tracked call whose work runs in a goroutine owned by
// the ledger. It writes the call's frame (CALL_SPAWNED; bounded by
// Options.LockTimeout), starts the work and returns without waiting for
// it, with the call's id available: the frame is in the ledger before the
// work starts.
//
// SpawnCall never fails: when the call cannot start (a nil argument, a
// session that left, a closed ledger, an operation that failed or
// completed, a ledger write that failed) the returned call has already
// failed with that error and no callback runs.
//
// The work's context is cancelled, with a cause (context.Cause), by Cancel
// (ErrCancelled), Leave with CancelPendingCalls, abort (ErrAborted), the
// operation's failure (an *OperationFailedError, matching
// ErrOperationFailed) or completion (ErrOperationCompleted), and Close
// (ErrClosed). A call whose context is already done when the work would
// start is cancelled without running it.
//
// The call ends in one of three ways:
//
//   - Success: the work returned a nil error. The frame is removed
//     (CALL_COMPLETED), then OnCompletion runs, then Done closes; so an
//     operation may be completed right after Wait returns. (If the frame
//     is gone, the call fails with ErrCallNotFound, alone; if the
//     operation ended meanwhile, it counts as cancelled.)
//   - Failure: the work returned an error while its context was live, or
//     panicked (even after cancellation), or called runtime.Goexit.
//     OnCallCrashed, if set, may turn the failure into success with a
//     fallback value (ok == true), which then ends as a success. Otherwise
//     the frame is removed (CALL_FAILED), OnCleanup runs and, unless
//     opts.Contained, the operation fails: the failure is recorded in the
//     ledger and Failure reports it; then Done closes. The other running
//     calls hear of the failure (OnOperationFailed, OnCleanup) and then
//     Failed closes on a goroutine of the library, which Done does not
//     wait for. Err is a *CallFailedError
//     wrapping the work's error or a *PanicError (value and stack). A panic
//     never crashes the process.
//   - Cancellation: the work returned an error after its context was
//     cancelled. The frame is removed (CALL_CANCELLED), OnCleanup runs
//     (after OnOperationFailed if the operation's failure was the cause),
//     Done closes; the call does not fail the operation. Err is a
//     *CallCancelledError (ErrCancelled) unwrapping to the cause.
//
// The end of a call reaches the ledger before the call has an outcome. A
// write that fails for any reason but an answer proving the frame or the
// operation gone (see Call) is retried, with pauses from 10ms growing to a
// second (at most one HeartbeatInterval), until the ledger takes it: a
// full disk, a lock held too long or a server that answered 500 delays the
// end of the call, never loses it. Meanwhile the call runs: IsCompleted is
// false, Done is open, Leave waits for it. The retries stop when the
// operation fails or ends in this process (the call ends as it would have
// then), or when Close begins: the call then fails with an error matching
// ErrClosed, its frame is still in the ledger, and Close reports this
// process crashed, as for a Call that was never ended.
//
// OnCleanup runs at most once per call. Callbacks run on the call's
// goroutine (OnOperationFailed on it or on the goroutine that delivers the
// operation's failure), never under a lock, and must not panic. Close
// cancels every spawned call and waits for its goroutine.
func SpawnCall[T any](op *Operation, work func(ctx context.Context, call *SpawnedCall[T]) (T, error), opts CallOptions[T]) *SpawnedCall[T] {
	c := newSpawnedCall(op, opts)
	switch {
	case op == nil:
		return c.failToStart(fmt.Errorf("%w: SpawnCall: nil *Operation", ErrInvalidArgument))
	case work == nil:
		return c.failToStart(fmt.Errorf("%w: SpawnCall: nil work", ErrInvalidArgument))
	}
	st := op.st
	c.id = st.nextCallID()
	if err := op.usable(); err != nil {
		return c.failToStart(err)
	}
	if !st.c.hold() {
		return c.failToStart(ErrClosed)
	}
	// The context exists before the call is tracked: Leave may cancel it
	// from then on.
	workCtx, cancelWork := context.WithCancelCause(st.ctx)
	c.cancel = cancelWork
	ctx, cancel := st.c.bound(context.Background())
	defer cancel()
	spec := frameSpec{CallID: c.id, Description: opts.Description, FailOnCrash: !opts.Contained, Kind: frameSpawned}
	if _, _, err := st.apply(ctx, addFrameOp{who: st.c.who, spec: spec}); err != nil {
		return c.abandon(err)
	}
	// Tracked only once the frame exists, so that no callback runs for a
	// call that never started. A failure in between cancels workCtx, and
	// the call then hears of it on its own goroutine.
	if err := op.trackUnlessLeft(c); err != nil {
		_, _, _ = st.apply(ctx, removeFrameOp{who: st.c.who, callID: c.id, kind: frameRaw}) // best effort: the work never ran
		return c.abandon(err)
	}
	go c.run(workCtx, work)
	return c
}

// newSpawnedCall returns a call of op that has not started; SpawnCall and
// the workers' argument checks make their calls with it.
func newSpawnedCall[T any](op *Operation, opts CallOptions[T]) *SpawnedCall[T] {
	return &SpawnedCall[T]{op: op, opts: opts, started: time.Now(), done: make(chan struct{})}
}

// abandon ends a call whose goroutine was held but will not start. The
// call is not shared yet.
func (c *SpawnedCall[T]) abandon(err error) *SpawnedCall[T] {
	c.cancel(nil)
	c.op.st.c.wg.Done()
	return c.failToStart(err)
}

// trackUnlessLeft records call in the session and the process, unless the
// session has left.
func (op *Operation) trackUnlessLeft(call trackedCall) error {
	op.mu.Lock()
	if op.left {
		op.mu.Unlock()
		return ErrSessionLeft
	}
	op.calls[call.ID()] = call
	op.mu.Unlock()
	op.st.mu.Lock()
	op.st.calls[call.ID()] = call
	op.st.mu.Unlock()
	return nil
}

// failToStart ends a call that never started with err. The call is not
// shared yet.
func (c *SpawnedCall[T]) failToStart(err error) *SpawnedCall[T] {
	c.state, c.err = callFailed, err
	close(c.done)
	return c
}

// run is the call's goroutine: it runs the work and ends the call.
func (c *SpawnedCall[T]) run(ctx context.Context, work func(context.Context, *SpawnedCall[T]) (T, error)) {
	defer c.op.st.c.wg.Done()
	defer c.cancel(nil) // releases the context; the outcome is decided by then
	if ctx.Err() != nil {
		c.endCancelled(context.Cause(ctx))
		return
	}
	returned := false
	defer func() {
		if !returned {
			c.endFailed(errGoexit)
		}
	}()
	v, panicked, err := c.call(ctx, work)
	returned = true
	cause := context.Cause(ctx) // nil while the context is live
	switch {
	case err == nil:
		c.endSuccess(v, cause)
	case cause != nil && !panicked:
		c.endCancelled(cause)
	default:
		c.endFailed(err)
	}
}

// call runs the work, turning a panic into a *PanicError.
func (c *SpawnedCall[T]) call(ctx context.Context, work func(context.Context, *SpawnedCall[T]) (T, error)) (v T, panicked bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, panicked, err = zero, true, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	v, err = work(ctx, c)
	return v, false, err
}

// endSuccess removes the frame and ends the call with result v. cause is
// the cause of the work's context if it was done when the work returned.
func (c *SpawnedCall[T]) endSuccess(v T, cause error) {
	st := c.op.st
	err, stopped := c.persist(func(ctx context.Context) error {
		_, _, err := st.apply(ctx, removeFrameOp{who: st.c.who, callID: c.id, kind: frameSpawned})
		return err
	})
	switch {
	case errors.Is(stopped, ErrClosed):
		c.finish(callFailed, fmt.Errorf("ledger: call %s: removing its frame: %w (stopped by %w)", c.id, err, stopped), true)
		return
	case stopped != nil:
		c.finishCancelled(stopped, false)
		return
	case err != nil && (cause != nil || errors.Is(err, ErrOperationFailed) || errors.Is(err, ErrOperationCompleted)):
		// The operation ended under the work: there is no frame to remove.
		st.learn(err)
		c.finishCancelled(cmp.Or(cause, err), false)
		return
	case err != nil:
		c.finish(callFailed, fmt.Errorf("ledger: call %s: removing its frame: %w", c.id, err), false)
		return
	}
	c.mu.Lock()
	c.state, c.result, c.kill = callSucceeded, v, nil
	c.mu.Unlock()
	c.op.untrack(c.id)
	if f := c.opts.Callback.OnCompletion; f != nil {
		f(v)
	}
	close(c.done)
}

// endFailed ends the call with the work's error werr, unless OnCallCrashed
// gives a fallback.
func (c *SpawnedCall[T]) endFailed(werr error) {
	if f := c.opts.Callback.OnCallCrashed; f != nil {
		if v, ok := fallback(f, werr); ok {
			c.endSuccess(v, nil)
			return
		}
	}
	st := c.op.st
	reason, stack := werr.Error(), ""
	if p, ok := werr.(*PanicError); ok {
		reason, stack = fmt.Sprint("panic: ", p.Value), string(p.Stack)
	}
	var v view
	err, stopped := c.persist(func(ctx context.Context) (err error) {
		v, _, err = st.apply(ctx, failFrameOp{who: st.c.who, callID: c.id, reason: reason, stack: stack})
		return err
	})
	// The outcome is set before the operation's failure is taken in, so
	// that Sync counts this call as failed, not unknown.
	c.mu.Lock()
	c.state, c.err, c.kill = callFailed, &CallFailedError{CallID: c.id, Err: werr}, nil
	c.mu.Unlock()
	if !errors.Is(stopped, ErrClosed) {
		st.learn(err)
		c.op.untrack(c.id)
	}
	c.cleanup()
	if err == nil && stopped == nil {
		// Fails the operation in this process when the ledger recorded
		// the failure.
		st.observe(v)
	}
	close(c.done)
}

// persist makes change, one end of the call in the ledger, until the
// ledger takes it or answers that it never can (see settled), pausing
// between attempts from 10ms up to a second (or one HeartbeatInterval, if
// shorter). It returns the ledger's last answer and, if it stopped trying
// first, why (see opState.retryEnd).
func (c *SpawnedCall[T]) persist(change func(ctx context.Context) error) (err, stopped error) {
	st := c.op.st
	pause := 10 * time.Millisecond
	var timer *time.Timer
	for {
		ctx, cancel := st.c.bound(context.Background())
		err = change(ctx)
		cancel()
		if settled(err) {
			return err, nil
		}
		if stopped := st.retryEnd(); stopped != nil {
			return err, stopped
		}
		if timer == nil {
			timer = time.NewTimer(pause)
			defer timer.Stop()
		} else {
			timer.Reset(pause)
		}
		select {
		case <-timer.C:
		case <-st.c.life.Done():
		}
		pause = min(2*pause, time.Second, st.c.opts.HeartbeatInterval)
	}
}

// retryEnd returns why the calls of st stop trying to reach the ledger:
// ErrClosed once Close has begun, else an *OperationFailedError once the
// operation has failed in this process, or the error that ended it here;
// nil while it goes on.
func (st *opState) retryEnd() error {
	if st.c.life.Err() != nil {
		return ErrClosed
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.failure != nil {
		return &OperationFailedError{Info: *st.failure}
	}
	return st.ended
}

// fallback runs OnCallCrashed; a panic in it means no fallback.
func fallback[T any](f func(error) (T, bool), err error) (v T, ok bool) {
	defer func() {
		if recover() != nil {
			var zero T
			v, ok = zero, false
		}
	}()
	return f(err)
}

// endCancelled removes the frame and ends the call as cancelled by cause.
func (c *SpawnedCall[T]) endCancelled(cause error) {
	st := c.op.st
	err, stopped := c.persist(func(ctx context.Context) error {
		_, _, err := st.apply(ctx, removeFrameOp{who: st.c.who, callID: c.id, kind: frameRaw})
		return err
	})
	if err == nil {
		// Best effort: the frame is gone, the line only explains why.
		ctx, cancel := st.c.bound(context.Background())
		_, _, _ = st.apply(ctx, logOp{who: st.c.who, level: LogInfo, msg: "CALL_CANCELLED " + c.id + " " + cause.Error()})
		cancel()
	}
	st.learn(err)
	c.finishCancelled(cause, errors.Is(stopped, ErrClosed))
}

// finishCancelled ends a cancelled call. When the operation's failure
// cancelled it, OnOperationFailed has run first (here, or on the goroutine
// that delivers the failure). kept is as for finish.
func (c *SpawnedCall[T]) finishCancelled(cause error, kept bool) {
	var ofe *OperationFailedError
	if errors.As(cause, &ofe) {
		c.operationFailed(ofe.Info)
	}
	c.finish(callCancelled, &CallCancelledError{CallID: c.id, Cause: cause}, kept)
}

// finish ends a call that did not succeed. Its frame is gone, unless kept:
// Close stopped the retries of a frame still in the ledger; the call then
// stays tracked, so that Close reports this process crashed rather than
// leave a frame that nobody removes.
func (c *SpawnedCall[T]) finish(s callState, err error, kept bool) {
	c.mu.Lock()
	c.state, c.err, c.kill = s, err, nil
	c.mu.Unlock()
	if !kept {
		c.op.untrack(c.id)
	}
	c.cleanup()
	close(c.done)
}

// cleanup runs OnCleanup, once.
func (c *SpawnedCall[T]) cleanup() {
	c.mu.Lock()
	ran := c.cleaned
	c.cleaned = true
	c.mu.Unlock()
	if f := c.opts.Callback.OnCleanup; f != nil && !ran {
		f()
	}
}

// operationFailed implements trackedCall: unless the call has already
// succeeded or failed, it runs OnOperationFailed and then OnCleanup, once.
// A concurrent second caller returns after they have run.
func (c *SpawnedCall[T]) operationFailed(info OperationFailedInfo) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		ended := c.state == callSucceeded || c.state == callFailed
		c.mu.Unlock()
		// The call whose failure failed the operation hears of it from its
		// own end, which may not have returned yet when the failure is
		// pushed to this process.
		if ended || slices.Contains(info.CrashedCallIDs, c.id) {
			return
		}
		if f := c.opts.Callback.OnOperationFailed; f != nil {
			f(info)
		}
		c.cleanup()
	})
}

// cancelForLeave cancels the work for Leave with CancelPendingCalls.
func (c *SpawnedCall[T]) cancelForLeave() {
	if c.cancel != nil {
		c.cancel(errLeaving)
	}
}

// errLeaving is the cause of the contexts that Leave cancels.
var errLeaving = fmt.Errorf("%w: the session left", ErrCancelled)

// setKill attaches a process to the call: Kill calls kill until the call
// ends. Workers use it.
func (c *SpawnedCall[T]) setKill(kill func(os.Signal) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == callRunning {
		c.kill = kill
	}
}

// ID returns the call id.
func (c *SpawnedCall[T]) ID() string { return c.id }

// Description returns the description given to SpawnCall.
func (c *SpawnedCall[T]) Description() string { return c.opts.Description }

// StartedAt returns when the call was spawned.
func (c *SpawnedCall[T]) StartedAt() time.Time { return c.started }

// Done returns a channel that is closed, once, when the call has ended and
// the callbacks of its outcome have run.
func (c *SpawnedCall[T]) Done() <-chan struct{} { return c.done }

// Wait waits for the call to end and returns its result, or its error
// (see Err). If ctx ends first, Wait returns context.Cause(ctx) and the
// call goes on. Wait may be called many times, from many goroutines.
func (c *SpawnedCall[T]) Wait(ctx context.Context) (T, error) {
	select {
	case <-c.done:
	default:
		select {
		case <-c.done:
		case <-ctx.Done():
			var zero T
			return zero, context.Cause(ctx)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result, c.err
}

// Result returns the result and true once the call has succeeded, else the
// zero value and false.
func (c *SpawnedCall[T]) Result() (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result, c.state == callSucceeded
}

// Err returns why the call did not succeed: a *CallFailedError when the
// work failed or panicked, a *CallCancelledError (ErrCancelled) when it was
// cancelled, or the error that kept SpawnCall from starting it. It is nil
// while the call runs and after success.
func (c *SpawnedCall[T]) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *SpawnedCall[T]) is(s callState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == s
}

// IsCompleted reports whether the call has an outcome (success, failure or
// cancellation). The outcome is set before the outcome's callbacks run;
// Done closes after them.
func (c *SpawnedCall[T]) IsCompleted() bool { return !c.is(callRunning) }

// IsSuccess reports whether the call succeeded: the work returned a result
// or OnCallCrashed gave a fallback.
func (c *SpawnedCall[T]) IsSuccess() bool { return c.is(callSucceeded) }

// IsFailed reports whether the call failed, or could not start.
func (c *SpawnedCall[T]) IsFailed() bool { return c.is(callFailed) }

// IsCancelled reports whether the work was cancelled before it finished.
func (c *SpawnedCall[T]) IsCancelled() bool { return c.is(callCancelled) }

// Cancel cancels the work's context with cause ErrCancelled and returns
// without waiting; Wait or Done tell when the call has ended. Cancel after
// the work has returned changes nothing.
func (c *SpawnedCall[T]) Cancel() {
	if c.cancel != nil {
		c.cancel(ErrCancelled)
	}
}

// Kill sends sig to the OS process attached to the call (a worker's whole
// process group) and reports whether it was sent; a worker that has not
// exited KillGrace later gets SIGKILL. It returns false when no process is
// attached or the call has ended.
func (c *SpawnedCall[T]) Kill(sig os.Signal) bool {
	c.mu.Lock()
	kill := c.kill
	c.mu.Unlock()
	return kill != nil && kill(sig) == nil
}

// valid implements Spawned.
func (c *SpawnedCall[T]) valid() bool { return c != nil && c.done != nil }

// SyncResult is what Sync saw of its calls, in the order they were given.
type SyncResult struct {
	// Successful holds the calls that succeeded.
	Successful []Spawned
	// Failed holds the calls that failed (or could not start).
	Failed []Spawned
	// Unknown holds the calls without a known result: still running when
	// Sync returned (the operation failed first, or ctx ended), or
	// cancelled before their work finished.
	Unknown []Spawned
	// OperationFailed reports that the operation had failed when Sync
	// returned.
	OperationFailed bool
}

// AllSucceeded reports whether every call succeeded and the operation did
// not fail.
func (r SyncResult) AllSucceeded() bool {
	return len(r.Failed) == 0 && len(r.Unknown) == 0 && !r.OperationFailed
}

// HasFailed reports whether a call failed.
func (r SyncResult) HasFailed() bool { return len(r.Failed) > 0 }

// AllResolved reports whether every call has a known result: none is in
// Unknown.
func (r SyncResult) AllResolved() bool { return len(r.Unknown) == 0 }

// SyncOptions holds the optional hooks of SyncWith. The zero value is
// valid.
type SyncOptions struct {
	// OnOperationFailed runs before Sync returns when the operation has
	// failed.
	OnOperationFailed func(info OperationFailedInfo)
	// OnCompletion runs last before Sync returns its result, whether or not
	// the operation failed (as in Dart). It does not run when ctx ends
	// first.
	OnCompletion func(r SyncResult)
}

// Sync waits until every call has ended, or the operation has failed, and
// returns what it saw. The calls may have different result types and may
// belong to any session. When the operation fails first, Sync returns at
// once, with the calls still running (whose contexts the failure cancels)
// in Unknown; a call of this process whose failure failed the operation is
// waited for, and is in Failed. If ctx ends first, Sync returns what it saw so far and
// context.Cause(ctx). A nil call is an error (ErrInvalidArgument). Use
// SyncWith for the hooks.
func (op *Operation) Sync(ctx context.Context, calls ...Spawned) (SyncResult, error) {
	return op.SyncWith(ctx, SyncOptions{}, calls...)
}

// SyncWith is Sync with hooks: when the operation has failed,
// opts.OnOperationFailed runs; then opts.OnCompletion runs with the result.
// Hooks run on the caller's goroutine; neither runs when ctx ends first.
func (op *Operation) SyncWith(ctx context.Context, opts SyncOptions, calls ...Spawned) (SyncResult, error) {
	for i, call := range calls {
		if call == nil || !call.valid() {
			return SyncResult{}, fmt.Errorf("%w: Sync: calls[%d] is not a spawned call", ErrInvalidArgument, i)
		}
	}
	err := op.waitCalls(ctx, calls)
	var r SyncResult
	for _, call := range calls {
		switch {
		case call.IsSuccess():
			r.Successful = append(r.Successful, call)
		case call.IsFailed():
			r.Failed = append(r.Failed, call)
		default:
			r.Unknown = append(r.Unknown, call)
		}
	}
	info, failed := op.Failure()
	r.OperationFailed = failed
	if err != nil {
		return r, err
	}
	if failed && opts.OnOperationFailed != nil {
		opts.OnOperationFailed(info)
	}
	if opts.OnCompletion != nil {
		opts.OnCompletion(r)
	}
	return r, nil
}

// waitCalls waits until every call is done, the operation has failed or
// ctx has ended; only the last is an error.
func (op *Operation) waitCalls(ctx context.Context, calls []Spawned) error {
	for _, call := range calls {
		select {
		case <-call.Done():
			continue
		default:
		}
		select {
		case <-call.Done():
		case <-op.st.failed:
			op.waitCulprits(ctx, calls)
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// waitCulprits waits for the calls whose failure failed the operation:
// they are ending on their own in this process, and are failed, not
// unknown, even when the failure reached Failed first (pushed to the
// monitor while the call was still writing it).
func (op *Operation) waitCulprits(ctx context.Context, calls []Spawned) {
	info, _ := op.Failure()
	for _, call := range calls {
		if slices.Contains(info.CrashedCallIDs, call.ID()) {
			select {
			case <-call.Done():
			case <-ctx.Done():
			}
		}
	}
}

// AwaitCall is Sync of one call.
func (op *Operation) AwaitCall(ctx context.Context, call Spawned) (SyncResult, error) {
	return op.SyncWith(ctx, SyncOptions{}, call)
}

// WaitOptions holds the optional hooks of WaitForCompletion. The zero value
// is valid.
type WaitOptions[T any] struct {
	// OnOperationFailed runs when the operation fails before the work
	// returns, before WaitForCompletion returns the failure.
	OnOperationFailed func(info OperationFailedInfo)
	// OnError runs when the work returns an error (or panics) and may give
	// a fallback result: ok == true makes it the result of
	// WaitForCompletion.
	OnError func(err error) (fallback T, ok bool)
}

// WaitForCompletion runs work and races it against the failure of the
// operation. The work runs in a goroutine owned by the ledger, with a
// context that is cancelled when ctx ends or the operation ends (abort,
// failure, completion, Close; see SpawnCall for the causes). It writes no
// call frame.
//
//   - The work returns a result: WaitForCompletion returns it.
//   - The operation fails first (or has failed already): opts.OnOperationFailed
//     runs, then WaitForCompletion returns an *OperationFailedError
//     (ErrOperationFailed) without waiting for the work, whose context is
//     cancelled; Close waits for it. A work error seen after the failure
//     counts as the failure.
//   - The work returns an error or panics (a *PanicError): opts.OnError may
//     give a fallback result; otherwise WaitForCompletion returns the error.
//   - ctx ends first: WaitForCompletion returns context.Cause(ctx).
func WaitForCompletion[T any](ctx context.Context, op *Operation, work func(ctx context.Context) (T, error), opts WaitOptions[T]) (T, error) {
	var zero T
	switch {
	case op == nil:
		return zero, fmt.Errorf("%w: WaitForCompletion: nil *Operation", ErrInvalidArgument)
	case work == nil:
		return zero, fmt.Errorf("%w: WaitForCompletion: nil work", ErrInvalidArgument)
	}
	if err := op.usable(); err != nil {
		return zero, err
	}
	if info, failed := op.Failure(); failed {
		return zero, failedFirst(info, opts.OnOperationFailed)
	}
	st := op.st
	if !st.c.hold() {
		return zero, ErrClosed
	}
	type outcome struct {
		v   T
		err error
	}
	out := make(chan outcome, 1)
	workCtx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(st.ctx, func() { cancel(context.Cause(st.ctx)) })
	go func() {
		defer st.c.wg.Done()
		defer cancel(nil)
		defer stop()
		v, err := protect(workCtx, work)
		out <- outcome{v, err}
	}()
	select {
	case o := <-out:
		// The failure came first if it ended the work's context, or if
		// the work failed once the operation had.
		if info, failed := op.Failure(); failed && (o.err != nil || errors.Is(context.Cause(workCtx), ErrOperationFailed)) {
			return zero, failedFirst(info, opts.OnOperationFailed)
		}
		if o.err == nil {
			return o.v, nil
		}
		if f := opts.OnError; f != nil {
			if v, ok := f(o.err); ok {
				return v, nil
			}
		}
		return zero, o.err
	case <-st.failed:
		info, _ := op.Failure()
		return zero, failedFirst(info, opts.OnOperationFailed)
	case <-ctx.Done():
		return zero, context.Cause(ctx)
	}
}

// protect runs work, turning a panic into a *PanicError.
func protect[T any](ctx context.Context, work func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return work(ctx)
}

// failedFirst runs the hook and returns the failure as an error.
func failedFirst(info OperationFailedInfo, hook func(OperationFailedInfo)) error {
	if hook != nil {
		hook(info)
	}
	return &OperationFailedError{Info: info}
}
