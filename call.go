package ledger

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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
	// most once for a spawned call.
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
type Call[T any] struct {
	op      *Operation
	id      string
	opts    CallOptions[T]
	started time.Time

	mu   sync.Mutex // guards done
	done bool
}

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

// IsCompleted reports whether End or Fail has succeeded.
func (c *Call[T]) IsCompleted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// finish marks the call done, or returns ErrCallCompleted. undo reverts it
// when the ledger could not be written, so that End or Fail can be retried.
func (c *Call[T]) finish() (undo func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil, fmt.Errorf("%w: %s", ErrCallCompleted, c.id)
	}
	c.done = true
	return func() {
		c.mu.Lock()
		c.done = false
		c.mu.Unlock()
	}, nil
}

// End ends the call with its result: the frame is removed (CALL_ENDED),
// then OnCompletion runs. A second End or Fail returns ErrCallCompleted.
func (c *Call[T]) End(ctx context.Context, result T) error {
	undo, err := c.finish()
	if err != nil {
		return err
	}
	st := c.op.st
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	if _, _, err := st.apply(ctx, removeFrameOp{who: st.c.who, callID: c.id, kind: frameCall}); err != nil {
		if retryable(err) {
			undo()
		}
		return err
	}
	c.op.untrack(c.id)
	if f := c.opts.Callback.OnCompletion; f != nil {
		f(result)
	}
	return nil
}

// Fail ends the call as failed with cause: the frame is removed
// (CALL_FAILED) and OnCleanup runs. Unless the call is Contained, the
// operation fails: the failure is recorded in the ledger and Failed closes.
func (c *Call[T]) Fail(ctx context.Context, cause error) error {
	undo, err := c.finish()
	if err != nil {
		return err
	}
	if cause == nil {
		cause = errors.New("call failed")
	}
	st := c.op.st
	ctx, cancel := st.c.bound(ctx)
	defer cancel()
	v, _, err := st.apply(ctx, failFrameOp{who: st.c.who, callID: c.id, reason: cause.Error(), stack: string(debug.Stack())})
	if err != nil {
		if retryable(err) {
			undo()
		}
		return err
	}
	c.op.untrack(c.id)
	if f := c.opts.Callback.OnCleanup; f != nil {
		f()
	}
	st.observe(v)
	return nil
}

// retryable reports whether a failed ledger write may be tried again: the
// lock could not be had, the caller gave up, or the request to a ledger
// server failed on the way.
func retryable(err error) bool {
	var ce *connError
	return errors.Is(err, ErrLockTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.As(err, &ce)
}

// operationFailed implements trackedCall.
func (c *Call[T]) operationFailed(info OperationFailedInfo) {
	if f := c.opts.Callback.OnOperationFailed; f != nil {
		f(info)
	}
	if f := c.opts.Callback.OnCleanup; f != nil {
		f()
	}
}
