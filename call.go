package ledger

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// CallCallback holds the callbacks of one call. Every field may be nil.
// Callbacks run with no lock held and may use the operation, but must not
// wait for their own call (Wait, Done, Sync, or Failed of its operation):
// a call ends, and Failed closes, only after its callbacks have run.
type CallCallback[T any] struct {
	// OnCompletion runs after the call ended well, with its result.
	OnCompletion func(result T)
	// OnCleanup runs after the call failed (or, for a spawned call, was
	// cancelled), and when the operation fails while the call runs; at
	// most once per call.
	OnCleanup func()
	// OnCallCrashed runs when the work of a spawned call fails or panics;
	// returning ok == true turns the failure into success with fallback.
	OnCallCrashed func(err error) (fallback T, ok bool)
	// OnOperationFailed runs when the operation fails while the call runs.
	OnOperationFailed func(info OperationFailedInfo)
}

// CallOptions configure StartCall and SpawnCall. The zero value is valid.
type CallOptions[T any] struct {
	// Description is written into the call frame and the log.
	Description string
	// Callback holds the call's callbacks.
	Callback CallCallback[T]
	// Contained keeps a failure of this call to itself. Zero means a
	// failure (Fail, an error or panic of the work, or a crash of the
	// process) fails the whole operation: Dart's failOnCrash: true.
	Contained bool
}

// Call is a tracked call whose work the caller runs: StartCall writes its
// frame, End or Fail removes it. A *Call is safe for concurrent use; the zero
// value is not usable.
//
// A call is over once End or Fail reached the ledger, or once the ledger
// answered that it never can: the frame is gone (ErrCallNotFound), or the
// operation is (ErrOperationNotFound, an *OperationFailedError,
// ErrOperationCompleted). Any other error of End or Fail (a full disk, a
// lock timeout, a server that answered 500, a lost connection) leaves the
// call open, whatever the error: its frame is still in the ledger, End or
// Fail may be called again, and Leave and Close treat the call as running.
type Call[T any] struct {
	op      *Operation
	id      string
	opts    CallOptions[T]
	started time.Time

	// failOnce runs OnOperationFailed and OnCleanup of the operation's
	// failure at most once, and makes a second caller wait until they
	// have run.
	failOnce sync.Once

	mu      sync.Mutex // guards state, cleaned
	state   endState
	cleaned bool // OnCleanup has run
}

// endState is how far End or Fail of a Call got.
type endState int

const (
	endOpen    endState = iota // no End or Fail in flight, none reached the ledger
	endPending                 // an End or Fail is in flight
	endApplied                 // End or Fail reached the ledger
	endGone                    // the ledger answered that it never can
)

// StartCall starts a tracked call: its frame is in the ledger (CALL_STARTED)
// when StartCall returns.
func StartCall[T any](ctx context.Context, op *Operation, opts CallOptions[T]) (*Call[T], error) {
	if err := op.usable(); err != nil {
		return nil, err
	}
	st := op.st
	c := &Call[T]{op: op, id: st.nextCallID(), opts: opts, started: time.Now()}
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	spec := frameSpec{CallID: c.id, Description: opts.Description, FailOnCrash: !opts.Contained, Kind: frameCall}
	if _, _, err := st.apply(ctx, addFrameOp{who: st.c.who, spec: spec}); err != nil {
		return nil, err
	}
	op.track(c)
	return c, nil
}

// ID returns the call id.
func (c *Call[T]) ID() string { return c.id }

// Description returns the description given to StartCall.
func (c *Call[T]) Description() string { return c.opts.Description }

// StartedAt returns when the call started.
func (c *Call[T]) StartedAt() time.Time { return c.started }

// IsCompleted reports whether the call is over: End or Fail reached the
// ledger, or the ledger answered that they never can (see Call).
func (c *Call[T]) IsCompleted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == endApplied || c.state == endGone
}

// begin claims the call for one End or Fail, or returns ErrCallCompleted
// when the call is over or another End or Fail is in flight.
func (c *Call[T]) begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != endOpen {
		return fmt.Errorf("%w: %s", ErrCallCompleted, c.id)
	}
	c.state = endPending
	return nil
}

// settle takes in the answer err of the ledger to End or Fail and reports
// whether the call is over. An answer that proves the frame or the
// operation gone ends the call; one saying that the operation failed or
// completed is taken in by the process, and a failure runs the call's
// OnOperationFailed and OnCleanup (once: the failure's delivery may run
// them too). Any other error reopens the call.
func (c *Call[T]) settle(err error) (over bool) {
	if !settled(err) {
		c.set(endOpen)
		return false
	}
	if err == nil {
		c.set(endApplied)
		c.op.untrack(c.id)
		return true
	}
	c.op.st.learn(err)
	c.set(endGone)
	c.op.untrack(c.id)
	var ofe *OperationFailedError
	if errors.As(err, &ofe) {
		c.operationFailed(ofe.Info)
	}
	return true
}

func (c *Call[T]) set(s endState) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

// End ends the call with its result: the frame is removed (CALL_ENDED),
// then OnCompletion runs. A second End or Fail returns ErrCallCompleted.
// When End returns an error, the call is open again unless the ledger
// answered that the call or its operation is gone (see Call); when the
// operation had failed, End runs OnOperationFailed and OnCleanup before it
// returns, as the failure does for every running call.
func (c *Call[T]) End(ctx context.Context, result T) error {
	if err := c.begin(); err != nil {
		return err
	}
	st := c.op.st
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	_, _, err := st.apply(ctx, removeFrameOp{who: st.c.who, callID: c.id, kind: frameCall})
	if c.settle(err) && err == nil {
		if f := c.opts.Callback.OnCompletion; f != nil {
			f(result)
		}
	}
	return err
}

// Fail ends the call as failed with cause: the frame is removed
// (CALL_FAILED) and OnCleanup runs. Unless the call is Contained, the
// operation fails: the failure is recorded in the ledger, and when Fail
// returns, Failure reports it and Context is cancelled; the other calls of
// this process hear of it, its temp resources are deleted and then Failed
// closes, on a goroutine of the library (see Failure in the package doc).
// When Fail returns an error, the call is open again unless the ledger
// answered that the call or its operation is gone (see Call); when the
// operation had failed, Fail runs OnOperationFailed and then OnCleanup
// before it returns, as the failure does for every running call.
func (c *Call[T]) Fail(ctx context.Context, cause error) error {
	if err := c.begin(); err != nil {
		return err
	}
	if cause == nil {
		cause = errors.New("call failed")
	}
	st := c.op.st
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	v, _, err := st.apply(ctx, failFrameOp{who: st.c.who, callID: c.id, reason: cause.Error(), stack: string(debug.Stack())})
	if !c.settle(err) {
		return err
	}
	c.cleanup()
	if err == nil {
		st.observe(v)
	}
	return err
}

// settled reports whether err, the answer of the ledger to the end of a
// call, settles the call: nil (the change reached the ledger), or an
// answer proving that it never can: the frame is gone (ErrCallNotFound),
// or the operation is (ErrOperationNotFound), failed or completed. Every
// other error leaves the frame in the ledger as it was, as far as this
// process can know, so the end may be tried again.
func settled(err error) bool {
	return err == nil || errors.Is(err, ErrCallNotFound) || errors.Is(err, ErrOperationNotFound) ||
		errors.Is(err, ErrOperationFailed) || errors.Is(err, ErrOperationCompleted)
}

// cleanup runs OnCleanup, once.
func (c *Call[T]) cleanup() {
	c.mu.Lock()
	ran := c.cleaned
	c.cleaned = true
	c.mu.Unlock()
	if f := c.opts.Callback.OnCleanup; f != nil && !ran {
		f()
	}
}

// operationFailed implements trackedCall: unless End or Fail reached the
// ledger, it runs OnOperationFailed and then OnCleanup, once. A concurrent
// second caller returns after they have run.
func (c *Call[T]) operationFailed(info OperationFailedInfo) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		applied := c.state == endApplied
		c.mu.Unlock()
		// The call whose failure failed the operation hears of it from its
		// own end, which may not have returned yet when the failure is
		// pushed to this process.
		if applied || slices.Contains(info.CrashedCallIDs, c.id) {
			return
		}
		if f := c.opts.Callback.OnOperationFailed; f != nil {
			f(info)
		}
		c.cleanup()
	})
}
