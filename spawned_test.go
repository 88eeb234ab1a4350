package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// wait is how long a test waits for an event before it fails.
const wait = 10 * time.Second

// newOp opens a ledger for alice on e and creates an operation.
func newOp(t *testing.T, e *env) (ledger.Ledger, *ledger.Operation) {
	t.Helper()
	l := e.Open("alice", ledger.Options{})
	op, err := l.CreateOperation(context.Background(), ledger.CreateOptions{Description: "spawn test"})
	require.NoError(t, err)
	return l, op
}

// opLog returns the INFO log of operation id, live or archived. It may be
// called from any goroutine.
func opLog(t testing.TB, e *env, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, id+".operation.log"))
	if errors.Is(err, os.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(e.dir, "backup", id, "operation.log"))
	}
	assert.NoError(t, err, "read log")
	return string(b)
}

// callEvents returns the log events that name call id, in order.
func callEvents(t testing.TB, e *env, opID, callID string) []string {
	t.Helper()
	var evs []string
	for _, line := range strings.Split(opLog(t, e, opID), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[4] == callID {
			evs = append(evs, f[3])
		}
	}
	return evs
}

// hasFrame reports whether the ledger holds a frame of call id. It may be
// called from any goroutine.
func hasFrame(t testing.TB, op *ledger.Operation, id string) bool {
	t.Helper()
	d, err := op.State(context.Background())
	if !assert.NoError(t, err, "state") {
		return false
	}
	return slices.ContainsFunc(d.CallFrames, func(f ledger.CallFrame) bool { return f.CallID == id })
}

// blockUntilCancelled is a work function that runs until its context ends.
func blockUntilCancelled[T any](started chan<- struct{}) func(context.Context, *ledger.SpawnedCall[T]) (T, error) {
	return func(ctx context.Context, _ *ledger.SpawnedCall[T]) (T, error) {
		if started != nil {
			started <- struct{}{}
		}
		<-ctx.Done()
		var zero T
		return zero, context.Cause(ctx)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestSpawnCallSuccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		var call *ledger.SpawnedCall[int]
		var frameFirst, spawnedLogged atomic.Bool
		var completedWith atomic.Int64
		var doneBeforeCompletion, frameAtCompletion atomic.Bool
		ready := make(chan struct{})
		call = ledger.SpawnCall(op, func(ctx context.Context, c *ledger.SpawnedCall[int]) (int, error) {
			select {
			case <-ready:
			case <-ctx.Done(): // the test failed early and closes the ledger
				return 0, ctx.Err()
			}
			frameFirst.Store(hasFrame(t, op, c.ID()))
			spawnedLogged.Store(slices.Contains(callEvents(t, e, op.ID(), c.ID()), "CALL_SPAWNED"))
			return 42, nil
		}, ledger.CallOptions[int]{
			Description: "answer",
			Callback: ledger.CallCallback[int]{OnCompletion: func(v int) {
				completedWith.Store(int64(v))
				doneBeforeCompletion.Store(isClosed(call.Done()))
				frameAtCompletion.Store(hasFrame(t, op, call.ID()))
			}},
		})
		require.NotEmpty(t, call.ID(), "call id")
		require.Equal(t, "answer", call.Description(), "description")
		require.False(t, call.StartedAt().IsZero(), "no start time")
		require.True(t, hasFrame(t, op, call.ID()), "no frame after SpawnCall returned")
		require.False(t, call.IsCompleted(), "completed before the work returned")
		close(ready)
		v, err := call.Wait(ctx)
		require.NoError(t, err, "Wait")
		require.Equal(t, 42, v, "Wait")
		assert.True(t, frameFirst.Load(), "no frame when the work started")
		assert.True(t, spawnedLogged.Load(), "no CALL_SPAWNED when the work started")
		assert.Equal(t, int64(42), completedWith.Load(), "OnCompletion's value")
		assert.False(t, doneBeforeCompletion.Load(), "Done closed before OnCompletion")
		assert.False(t, frameAtCompletion.Load(), "frame present at OnCompletion")
		r, ok := call.Result()
		assert.True(t, ok, "no Result")
		assert.Equal(t, 42, r, "Result")
		assert.True(t, call.IsCompleted(), "IsCompleted")
		assert.True(t, call.IsSuccess(), "IsSuccess")
		assert.False(t, call.IsFailed(), "IsFailed")
		assert.False(t, call.IsCancelled(), "IsCancelled")
		assert.NoError(t, call.Err(), "Err")
		assert.Equal(t, []string{"CALL_SPAWNED", "CALL_COMPLETED"}, callEvents(t, e, op.ID(), call.ID()), "events")
		assert.Falsef(t, op.HasPendingCalls(), "pending after success: %v", op.PendingCalls())
		// The frame is gone when Wait returns, so Complete cannot race it.
		require.NoError(t, op.Complete(ctx))
	})
}

func TestSpawnCallErrorFailsOperation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		var otherFailed atomic.Pointer[ledger.OperationFailedInfo]
		var otherCleanup, badCleanup, badOpFailed atomic.Int32
		started := make(chan struct{}, 1)
		other := ledger.SpawnCall(op, blockUntilCancelled[string](started), ledger.CallOptions[string]{
			Callback: ledger.CallCallback[string]{
				OnOperationFailed: func(info ledger.OperationFailedInfo) { otherFailed.Store(&info) },
				OnCleanup:         func() { otherCleanup.Add(1) },
			},
		})
		<-started
		errDisk := errors.New("disk full")
		bad := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			return 0, errDisk
		}, ledger.CallOptions[int]{
			Description: "write",
			Callback: ledger.CallCallback[int]{
				OnCleanup:         func() { badCleanup.Add(1) },
				OnOperationFailed: func(ledger.OperationFailedInfo) { badOpFailed.Add(1) },
			},
		})
		_, err := bad.Wait(ctx)
		var cfe *ledger.CallFailedError
		require.ErrorIs(t, err, errDisk, "Wait")
		require.ErrorAs(t, err, &cfe, "Wait: want a *CallFailedError")
		require.Equal(t, bad.ID(), cfe.CallID, "the CallFailedError's call")
		assert.True(t, bad.IsFailed(), "bad call not failed")
		assert.False(t, bad.IsSuccess(), "bad call succeeded")
		assert.False(t, bad.IsCancelled(), "bad call cancelled")
		assert.True(t, bad.Err() == err, "bad call's Err is not Wait's error")
		// The failure is known when bad's Done closes; Failed closes once
		// every other call heard of it.
		info, ok := op.Failure()
		require.True(t, ok, "no Failure")
		assert.Equal(t, []string{bad.ID()}, info.CrashedCallIDs, "Failure")
		assert.Contains(t, info.Reason, "disk full", "Failure")
		waitClosed(t, op.Failed(), 5*time.Second, "Failed")
		p := otherFailed.Load()
		require.NotNil(t, p, "other call's OnOperationFailed did not run")
		assert.Equal(t, []string{bad.ID()}, p.CrashedCallIDs, "other call's OnOperationFailed")
		assert.Equal(t, int32(1), badCleanup.Load(), "failing call: OnCleanup runs")
		assert.Equal(t, int32(0), badOpFailed.Load(), "failing call: OnOperationFailed runs")
		_, err = other.Wait(ctx)
		var cce *ledger.CallCancelledError
		assert.True(t, other.IsCancelled(), "other call not cancelled")
		assert.ErrorIs(t, err, ledger.ErrCancelled, "other call")
		assert.ErrorIs(t, err, ledger.ErrOperationFailed, "other call")
		assert.ErrorAs(t, err, &cce, "other call")
		assert.Equal(t, int32(1), otherCleanup.Load(), "other call's OnCleanup runs")
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, "running", d.OperationState, "ledger state")
		assert.NotNil(t, d.Failure, "no failure recorded")
		assert.Contains(t, callEvents(t, e, op.ID(), bad.ID()), "CALL_FAILED", "events of the failing call")
		// A failed operation takes no new calls.
		late := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 1, nil }, ledger.CallOptions[int]{})
		_, err = late.Wait(ctx)
		assert.ErrorIs(t, err, ledger.ErrOperationFailed, "spawn on a failed operation")
		assert.True(t, late.IsFailed(), "spawn on a failed operation: call not failed")
	})
}

func TestSpawnCallFrameGone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		release := make(chan struct{})
		call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			select {
			case <-release:
			case <-ctx.Done(): // the test failed early and closes the ledger
				return 0, ctx.Err()
			}
			return 1, nil
		}, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnCompletion: func(int) { assert.Fail(t, "OnCompletion ran without a frame removed") },
		}})
		// Someone removed the frame under the call: its result cannot be
		// recorded, so the call fails, alone.
		require.NoError(t, op.DeleteCallFrame(ctx, call.ID()))
		close(release)
		_, err := call.Wait(ctx)
		require.ErrorIs(t, err, ledger.ErrCallNotFound, "Wait")
		require.True(t, call.IsFailed(), "call not failed")
		assert.False(t, isClosed(op.Failed()), "the operation failed")
	})
}

func TestSpawnCallPanic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			panicInWork()
			return 1, nil
		}, ledger.CallOptions[int]{})
		_, err := call.Wait(ctx)
		var pe *ledger.PanicError
		require.ErrorAs(t, err, &pe, "Wait: want a *PanicError")
		assert.Equal(t, "boom", pe.Value, "the panic's value")
		assert.Contains(t, string(pe.Stack), "panicInWork", "the panic's stack")
		assert.True(t, call.IsFailed(), "call not failed")
		waitClosed(t, op.Failed(), wait, "operation failure after a panic")
		info, _ := op.Failure()
		assert.Contains(t, info.Reason, "boom", "failure reason")
	})
}

//go:noinline
func panicInWork() { panic("boom") }

func TestSpawnCallGoexit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := newOp(t, e)
		call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			runtime.Goexit()
			return 1, nil
		}, ledger.CallOptions[int]{Contained: true})
		_, err := call.Wait(context.Background())
		require.Error(t, err, "Goexit in the work")
		require.True(t, call.IsFailed(), "Goexit in the work: call not failed")
		assert.False(t, hasFrame(t, op, call.ID()), "frame left behind")
	})
}

func TestSpawnCallFallback(t *testing.T) {
	for _, tc := range []struct {
		name string
		work func(context.Context, *ledger.SpawnedCall[int]) (int, error)
		want func(error) bool
	}{
		{"error", func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 0, errors.New("flaky") },
			func(err error) bool { return err != nil && err.Error() == "flaky" }},
		{"panic", func(context.Context, *ledger.SpawnedCall[int]) (int, error) { panic("boom") },
			func(err error) bool { var pe *ledger.PanicError; return errors.As(err, &pe) && pe.Value == "boom" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				_, op := newOp(t, e)
				var crashedWith error
				var completedWith atomic.Int64
				call := ledger.SpawnCall(op, tc.work, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
					OnCallCrashed: func(err error) (int, bool) { crashedWith = err; return 7, true },
					OnCompletion:  func(v int) { completedWith.Store(int64(v)) },
				}})
				v, err := call.Wait(ctx)
				require.NoError(t, err, "Wait: want the fallback")
				require.Equal(t, 7, v, "Wait: want the fallback")
				require.True(t, call.IsSuccess(), "call not successful")
				assert.Truef(t, tc.want(crashedWith), "OnCallCrashed got %v", crashedWith)
				assert.Equal(t, int64(7), completedWith.Load(), "OnCompletion's value")
				assert.False(t, isClosed(op.Failed()), "a fallback failed the operation")
				assert.Equal(t, []string{"CALL_SPAWNED", "CALL_COMPLETED"}, callEvents(t, e, op.ID(), call.ID()), "events")
				// No fallback (ok == false): the call fails as usual.
				declined := ledger.SpawnCall(op, tc.work, ledger.CallOptions[int]{Contained: true, Callback: ledger.CallCallback[int]{
					OnCallCrashed: func(error) (int, bool) { return 7, false },
				}})
				_, err = declined.Wait(ctx)
				assert.Truef(t, tc.want(errors.Unwrap(err)), "declined fallback: %v", err)
				assert.True(t, declined.IsFailed(), "declined fallback: call not failed")
			})
		})
	}
}

func TestSpawnCallContained(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		started := make(chan struct{}, 1)
		other := ledger.SpawnCall(op, blockUntilCancelled[int](started), ledger.CallOptions[int]{})
		<-started
		var cleanup atomic.Int32
		bad := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) {
			return 0, errors.New("contained")
		}, ledger.CallOptions[int]{Contained: true, Callback: ledger.CallCallback[int]{OnCleanup: func() { cleanup.Add(1) }}})
		_, err := bad.Wait(ctx)
		require.Error(t, err, "contained call")
		require.True(t, bad.IsFailed(), "contained call not failed")
		assert.Equal(t, int32(1), cleanup.Load(), "OnCleanup runs")
		assert.False(t, isClosed(op.Failed()), "a contained failure failed the operation")
		assert.False(t, other.IsCompleted(), "a contained failure ended another call")
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, "running", d.OperationState, "ledger state")
		assert.Nil(t, d.Failure, "failure recorded")
		assert.Contains(t, callEvents(t, e, op.ID(), bad.ID()), "CALL_FAILED", "events")
		other.Cancel()
		other.Wait(ctx)
	})
}

func TestSpawnCallCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)

		t.Run("running", func(t *testing.T) {
			started := make(chan struct{}, 1)
			var cleanup atomic.Int32
			var cause atomic.Value
			call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
				started <- struct{}{}
				<-ctx.Done()
				cause.Store(context.Cause(ctx))
				return 0, ctx.Err()
			}, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{OnCleanup: func() { cleanup.Add(1) }}})
			<-started
			call.Cancel()
			_, err := call.Wait(ctx)
			var cce *ledger.CallCancelledError
			require.ErrorIs(t, err, ledger.ErrCancelled, "Wait")
			require.ErrorAs(t, err, &cce, "Wait: want a *CallCancelledError")
			require.Equal(t, call.ID(), cce.CallID, "the CallCancelledError's call")
			assert.Same(t, ledger.ErrCancelled, cause.Load(), "context cause")
			assert.True(t, call.IsCancelled(), "after Cancel: IsCancelled")
			assert.False(t, call.IsFailed(), "after Cancel: IsFailed")
			assert.False(t, call.IsSuccess(), "after Cancel: IsSuccess")
			assert.True(t, call.IsCompleted(), "after Cancel: IsCompleted")
			assert.Equal(t, int32(1), cleanup.Load(), "OnCleanup runs")
			assert.False(t, hasFrame(t, op, call.ID()), "frame left")
			assert.False(t, isClosed(op.Failed()), "operation failed")
			assert.Equal(t, []string{"CALL_SPAWNED", "CALL_CANCELLED"}, callEvents(t, e, op.ID(), call.ID()), "events")
		})

		t.Run("right after SpawnCall", func(t *testing.T) {
			// Cancel races the start of the work: whether the work runs or
			// not, the call ends cancelled.
			call := ledger.SpawnCall(op, blockUntilCancelled[int](nil), ledger.CallOptions[int]{})
			call.Cancel()
			_, err := call.Wait(ctx)
			require.ErrorIs(t, err, ledger.ErrCancelled, "Wait")
			require.True(t, call.IsCancelled(), "call not cancelled")
			assert.False(t, hasFrame(t, op, call.ID()), "frame left")
		})

		t.Run("after completion", func(t *testing.T) {
			call := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 5, nil }, ledger.CallOptions[int]{})
			v, err := call.Wait(ctx)
			require.NoError(t, err, "Wait")
			require.Equal(t, 5, v, "Wait")
			call.Cancel()
			v, err = call.Wait(ctx)
			assert.NoError(t, err, "after Cancel")
			assert.Equal(t, 5, v, "after Cancel")
			assert.True(t, call.IsSuccess(), "after Cancel: IsSuccess")
			assert.False(t, call.IsCancelled(), "after Cancel: IsCancelled")
		})
	})
}

func TestSpawnCallOnAbortedOperation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := newOp(t, e)
		op.TriggerAbort()
		var ran atomic.Bool
		call := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) {
			ran.Store(true)
			return 1, nil
		}, ledger.CallOptions[int]{})
		_, err := call.Wait(context.Background())
		assert.ErrorIs(t, err, ledger.ErrAborted, "Wait: want cancelled by the abort")
		assert.ErrorIs(t, err, ledger.ErrCancelled, "Wait: want cancelled by the abort")
		assert.True(t, call.IsCancelled(), "call not cancelled")
		assert.False(t, ran.Load(), "the work ran with a cancelled context")
		assert.False(t, hasFrame(t, op, call.ID()), "frame left")
		assert.Equal(t, []string{"CALL_SPAWNED", "CALL_CANCELLED"}, callEvents(t, e, op.ID(), call.ID()), "events")
	})
}

func TestSpawnCallContextCauses(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, l ledger.Ledger, op *ledger.Operation)
		want error
	}{
		{"abort", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			require.NoError(t, op.SetAbortFlag(context.Background(), true))
		}, ledger.ErrAborted},
		{"close", func(t *testing.T, l ledger.Ledger, _ *ledger.Operation) {
			require.NoError(t, l.Close())
		}, ledger.ErrClosed},
		{"complete", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			require.NoError(t, op.Complete(context.Background()))
		}, ledger.ErrOperationCompleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				l := e.Open("alice", ledger.Options{})
				op, err := l.CreateOperation(context.Background(), ledger.CreateOptions{})
				require.NoError(t, err)
				started := make(chan struct{}, 1)
				var cause atomic.Value
				call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
					started <- struct{}{}
					<-ctx.Done()
					cause.Store(context.Cause(ctx))
					return 0, ctx.Err()
				}, ledger.CallOptions[int]{})
				<-started
				tc.end(t, l, op)
				_, err = call.Wait(context.Background())
				assert.ErrorIs(t, err, tc.want, "Wait")
				assert.ErrorIs(t, err, ledger.ErrCancelled, "Wait")
				assert.True(t, call.IsCancelled(), "call not cancelled")
				c, _ := cause.Load().(error)
				assert.ErrorIs(t, c, tc.want, "context cause")
			})
		})
	}
}

func TestSpawnCallCannotStart(t *testing.T) {
	ok := func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 1, nil }
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		l, op := newOp(t, e)
		for _, tc := range []struct {
			name string
			call func() *ledger.SpawnedCall[int]
			want error
		}{
			{"nil operation", func() *ledger.SpawnedCall[int] { return ledger.SpawnCall(nil, ok, ledger.CallOptions[int]{}) }, ledger.ErrInvalidArgument},
			{"nil work", func() *ledger.SpawnedCall[int] { return ledger.SpawnCall[int](op, nil, ledger.CallOptions[int]{}) }, ledger.ErrInvalidArgument},
		} {
			call := tc.call()
			_, err := call.Wait(ctx)
			assert.ErrorIsf(t, err, tc.want, "%s", tc.name)
			assert.Truef(t, call.IsFailed(), "%s: call not failed", tc.name)
		}

		second, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		require.NoError(t, second.Leave(ctx, ledger.LeaveOptions{}))
		_, err = ledger.SpawnCall(second, ok, ledger.CallOptions[int]{}).Wait(ctx)
		assert.ErrorIs(t, err, ledger.ErrSessionLeft, "left session")
		require.NoError(t, op.Complete(ctx))
		_, err = ledger.SpawnCall(op, ok, ledger.CallOptions[int]{}).Wait(ctx)
		assert.ErrorIs(t, err, ledger.ErrOperationCompleted, "completed operation")
		l2 := e.Open("bob", ledger.Options{})
		op2, err := l2.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		l2.Close()
		_, err = ledger.SpawnCall(op2, ok, ledger.CallOptions[int]{}).Wait(ctx)
		assert.ErrorIs(t, err, ledger.ErrClosed, "closed ledger")
	})
}

func TestSyncOperationFailsWhileManyRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		const n = 50
		started := make(chan struct{}, n)
		var opFailed atomic.Int32
		opts := ledger.CallOptions[int]{
			Callback: ledger.CallCallback[int]{OnOperationFailed: func(ledger.OperationFailedInfo) { opFailed.Add(1) }},
		}
		calls := make([]ledger.Spawned, 0, n+1)
		// One call ignores its context until Sync has returned: Sync must
		// not wait for the running calls once the operation has failed.
		stubborn := make(chan struct{})
		releaseStubborn := sync.OnceFunc(func() { close(stubborn) })
		t.Cleanup(releaseStubborn) // before Close, should the test fail early
		calls = append(calls, ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			started <- struct{}{}
			<-stubborn
			<-ctx.Done()
			return 0, context.Cause(ctx)
		}, opts))
		for range n - 1 {
			calls = append(calls, ledger.SpawnCall(op, blockUntilCancelled[int](started), opts))
		}
		for range n {
			<-started
		}
		release := make(chan struct{})
		bad := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) {
			<-release
			return 0, errors.New("broken")
		}, ledger.CallOptions[int]{})
		calls = append(calls, bad)

		type syncOut struct {
			r   ledger.SyncResult
			err error
		}
		out := make(chan syncOut, 1)
		var hookInfo ledger.OperationFailedInfo
		var hooks []string
		go func() {
			r, err := op.SyncWith(ctx, ledger.SyncOptions{
				OnOperationFailed: func(info ledger.OperationFailedInfo) { hookInfo = info; hooks = append(hooks, "failed") },
				OnCompletion:      func(ledger.SyncResult) { hooks = append(hooks, "completion") },
			}, calls...)
			out <- syncOut{r, err}
		}()
		close(release)
		var got syncOut
		select {
		case got = <-out:
		case <-time.After(wait):
			require.Fail(t, "Sync did not return after the operation failed")
		}
		r := got.r
		require.NoError(t, got.err)
		require.False(t, calls[0].IsCompleted(), "the stubborn call ended before Sync returned")
		releaseStubborn()
		assert.True(t, r.OperationFailed, "SyncResult.OperationFailed")
		if assert.Len(t, r.Failed, 1, "SyncResult.Failed") {
			assert.Same(t, bad, r.Failed[0], "SyncResult.Failed")
		}
		assert.Len(t, r.Unknown, n, "SyncResult.Unknown")
		assert.Empty(t, r.Successful, "SyncResult.Successful")
		assert.False(t, r.AllSucceeded(), "SyncResult.AllSucceeded")
		assert.True(t, r.HasFailed(), "SyncResult.HasFailed")
		assert.False(t, r.AllResolved(), "SyncResult.AllResolved")
		assert.Equal(t, []string{"failed", "completion"}, hooks, "hooks")
		assert.Equal(t, []string{bad.ID()}, hookInfo.CrashedCallIDs, "OnOperationFailed info")
		for _, c := range r.Unknown {
			waitClosed(t, c.Done(), wait, "a cancelled call to end")
			assert.Truef(t, c.IsCancelled(), "call %s not cancelled", c.ID())
			assert.ErrorIsf(t, c.Err(), ledger.ErrOperationFailed, "call %s", c.ID())
		}
		// Each call's OnOperationFailed ran before its Done closed.
		assert.Equal(t, int32(n), opFailed.Load(), "calls whose OnOperationFailed ran")
		assert.Falsef(t, op.HasPendingCalls(), "pending calls after the failure: %v", op.PendingCalls())
	})
}

func TestSyncThousandCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		const n = 1000
		calls := make([]*ledger.SpawnedCall[int], n)
		all := make([]ledger.Spawned, n)
		for i := range n {
			calls[i] = ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return i * i, nil },
				ledger.CallOptions[int]{Description: fmt.Sprint("square ", i)})
			all[i] = calls[i]
		}
		r, err := op.Sync(ctx, all...)
		require.NoError(t, err)
		assert.Truef(t, r.AllSucceeded(), "failed %d, unknown %d", len(r.Failed), len(r.Unknown))
		assert.Equal(t, n, len(r.Successful), "calls that succeeded")
		for i, c := range calls {
			v, ok := c.Result()
			require.Truef(t, ok, "call %d has no result", i)
			require.Equalf(t, i*i, v, "call %d", i)
		}
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.Empty(t, d.CallFrames, "frames left")
		ev := count(logEvents(opLog(t, e, op.ID())))
		assert.Equal(t, n, ev["CALL_SPAWNED"], "CALL_SPAWNED in the log")
		assert.Equal(t, n, ev["CALL_COMPLETED"], "CALL_COMPLETED in the log")
	})
}

func TestSyncMixedTypes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		n := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 3, nil }, ledger.CallOptions[int]{})
		s := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[string]) (string, error) { return "x", nil }, ledger.CallOptions[string]{})
		f := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[[]byte]) ([]byte, error) { return nil, errors.New("no") },
			ledger.CallOptions[[]byte]{Contained: true})
		var completion *ledger.SyncResult
		r, err := op.SyncWith(ctx, ledger.SyncOptions{
			OnOperationFailed: func(ledger.OperationFailedInfo) { assert.Fail(t, "OnOperationFailed ran without a failure") },
			OnCompletion:      func(r ledger.SyncResult) { completion = &r },
		}, n, s, f)
		require.NoError(t, err)
		require.Len(t, r.Successful, 2, "SyncResult.Successful")
		assert.Same(t, n, r.Successful[0], "SyncResult.Successful")
		assert.Same(t, s, r.Successful[1], "SyncResult.Successful")
		require.Len(t, r.Failed, 1, "SyncResult.Failed")
		assert.Same(t, f, r.Failed[0], "SyncResult.Failed")
		assert.False(t, r.OperationFailed, "SyncResult.OperationFailed")
		assert.False(t, r.AllSucceeded(), "SyncResult.AllSucceeded")
		assert.True(t, r.HasFailed(), "SyncResult.HasFailed")
		assert.True(t, r.AllResolved(), "SyncResult.AllResolved")
		require.NotNil(t, completion, "OnCompletion did not run")
		assert.Len(t, completion.Successful, 2, "OnCompletion's SyncResult.Successful")
		one, err := op.AwaitCall(ctx, s)
		require.NoError(t, err, "AwaitCall")
		assert.True(t, one.AllSucceeded(), "AwaitCall: AllSucceeded")
		assert.Len(t, one.Successful, 1, "AwaitCall: Successful")
		none, err := op.Sync(ctx)
		assert.NoError(t, err, "Sync of nothing")
		assert.True(t, none.AllSucceeded(), "Sync of nothing")
		var nilCall *ledger.SpawnedCall[int]
		for _, bad := range [][]ledger.Spawned{{nil}, {n, nilCall}, {&ledger.SpawnedCall[int]{}}} {
			_, err := op.Sync(ctx, bad...)
			assert.ErrorIsf(t, err, ledger.ErrInvalidArgument, "Sync(%v)", bad)
		}
		_, err = op.AwaitCall(ctx, nil)
		assert.ErrorIs(t, err, ledger.ErrInvalidArgument, "AwaitCall(nil)")
	})
}

func TestWaitFromManyGoroutines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		release := make(chan struct{})
		call := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[string]) (string, error) {
			<-release
			return "done", nil
		}, ledger.CallOptions[string]{})
		var wg sync.WaitGroup
		var waiting sync.WaitGroup
		results := make([]string, 10)
		errs := make([]error, 10)
		for i := range 10 {
			wg.Add(1)
			waiting.Add(1)
			go func() {
				defer wg.Done()
				waiting.Done()
				results[i], errs[i] = call.Wait(ctx)
			}()
		}
		waiting.Wait()
		close(release)
		wg.Wait()
		for i := range 10 {
			assert.Equalf(t, "done", results[i], "waiter %d", i)
			assert.NoErrorf(t, errs[i], "waiter %d", i)
		}
	})
}

func TestWaitAndSyncDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := newOp(t, e)
		started := make(chan struct{}, 1)
		call := ledger.SpawnCall(op, blockUntilCancelled[int](started), ledger.CallOptions[int]{})
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := call.Wait(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded, "Wait past the deadline")
		r, err := op.SyncWith(ctx, ledger.SyncOptions{
			OnCompletion: func(ledger.SyncResult) { assert.Fail(t, "OnCompletion ran after the deadline") },
		}, call)
		require.ErrorIs(t, err, context.DeadlineExceeded, "Sync past the deadline")
		require.Len(t, r.Unknown, 1, "Sync past the deadline: SyncResult.Unknown")
		require.False(t, r.AllResolved(), "Sync past the deadline: SyncResult.AllResolved")
		cause := errors.New("gave up")
		cctx, ccancel := context.WithCancelCause(context.Background())
		ccancel(cause)
		_, err = call.Wait(cctx)
		require.Same(t, cause, err, "Wait after cancel with cause")
		require.False(t, call.IsCompleted(), "a caller's deadline ended the call")
		require.True(t, hasFrame(t, op, call.ID()), "a caller's deadline removed the call's frame")
		call.Cancel()
		waitClosed(t, call.Done(), wait, "the call to end")
	})
}

func TestWaitForCompletion(t *testing.T) {
	errWork := errors.New("work failed")
	for _, tc := range []struct {
		name    string
		work    func(ctx context.Context) (int, error)
		onError func(error) (int, bool)
		want    int
		wantErr error
	}{
		{"result", func(context.Context) (int, error) { return 4, nil }, nil, 4, nil},
		{"error", func(context.Context) (int, error) { return 0, errWork }, nil, 0, errWork},
		{"fallback", func(context.Context) (int, error) { return 0, errWork },
			func(err error) (int, bool) { return 9, errors.Is(err, errWork) }, 9, nil},
		{"declined fallback", func(context.Context) (int, error) { return 0, errWork },
			func(err error) (int, bool) { return 9, false }, 0, errWork},
		{"panic", func(context.Context) (int, error) { panic("boom") }, nil, 0, &ledger.PanicError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				_, op := newOp(t, e)
				v, err := ledger.WaitForCompletion(context.Background(), op, tc.work, ledger.WaitOptions[int]{
					OnError:           tc.onError,
					OnOperationFailed: func(ledger.OperationFailedInfo) { assert.Fail(t, "OnOperationFailed ran") },
				})
				assert.Equal(t, tc.want, v, "result")
				switch want := tc.wantErr.(type) {
				case nil:
					require.NoError(t, err, "error")
				case *ledger.PanicError:
					require.ErrorAs(t, err, &want, "error")
					assert.Equal(t, "boom", want.Value, "the panic's value")
				default:
					assert.ErrorIs(t, err, want, "error")
				}
			})
		})
	}
}

func TestWaitForCompletionOperationFails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		_, op := newOp(t, e)
		started := make(chan struct{})
		var workCause atomic.Value
		var hook []string
		bad := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			<-started
			return 0, errors.New("crashed")
		}, ledger.CallOptions[int]{})
		v, err := ledger.WaitForCompletion(ctx, op, func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			workCause.Store(context.Cause(ctx))
			return 1, nil
		}, ledger.WaitOptions[int]{
			OnOperationFailed: func(info ledger.OperationFailedInfo) {
				hook = append(hook, "failed:"+strings.Join(info.CrashedCallIDs, ","))
			},
			OnError: func(error) (int, bool) { assert.Fail(t, "OnError ran for an operation failure"); return 0, false },
		})
		var ofe *ledger.OperationFailedError
		require.Zero(t, v, "WaitForCompletion's value")
		require.ErrorAs(t, err, &ofe, "WaitForCompletion: want an *OperationFailedError")
		require.ErrorIs(t, err, ledger.ErrOperationFailed, "WaitForCompletion")
		assert.Equal(t, []string{bad.ID()}, ofe.Info.CrashedCallIDs, "failure info")
		assert.Equal(t, op.ID(), ofe.Info.OperationID, "failure info")
		assert.Equal(t, []string{"failed:" + bad.ID()}, hook, "OnOperationFailed calls")
		// The work's context is cancelled by the failure.
		waitFor(t, wait, "the work to see the failure", func() bool { return workCause.Load() != nil })
		assert.ErrorIs(t, workCause.Load().(error), ledger.ErrOperationFailed, "work context cause")
		// Once failed, WaitForCompletion fails at once without running work.
		hook = nil
		_, err = ledger.WaitForCompletion(ctx, op, func(context.Context) (int, error) {
			assert.Fail(t, "work ran on a failed operation")
			return 0, nil
		}, ledger.WaitOptions[int]{OnOperationFailed: func(ledger.OperationFailedInfo) { hook = append(hook, "failed") }})
		assert.ErrorAs(t, err, &ofe, "on a failed operation")
		assert.Len(t, hook, 1, "OnOperationFailed calls on a failed operation")
	})
}

func TestWaitForCompletionContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := newOp(t, e)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		var sawDone atomic.Bool
		_, err := ledger.WaitForCompletion(ctx, op, func(ctx context.Context) (int, error) {
			<-ctx.Done()
			sawDone.Store(true)
			return 0, ctx.Err()
		}, ledger.WaitOptions[int]{})
		require.ErrorIs(t, err, context.DeadlineExceeded, "error, want the deadline")
		waitFor(t, wait, "the work to see its context end", sawDone.Load)
		_, err = ledger.WaitForCompletion[int](ctx, op, nil, ledger.WaitOptions[int]{})
		assert.ErrorIs(t, err, ledger.ErrInvalidArgument, "nil work")
		_, err = ledger.WaitForCompletion(ctx, nil, func(context.Context) (int, error) { return 0, nil }, ledger.WaitOptions[int]{})
		assert.ErrorIs(t, err, ledger.ErrInvalidArgument, "nil operation")
	})
}

func TestLeaveWithPendingCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		l, op := newOp(t, e)
		session, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		started := make(chan struct{}, 2)
		var causes sync.Map
		work := func(ctx context.Context, c *ledger.SpawnedCall[int]) (int, error) {
			started <- struct{}{}
			<-ctx.Done()
			causes.Store(c.ID(), context.Cause(ctx))
			return 0, ctx.Err()
		}
		a := ledger.SpawnCall(session, work, ledger.CallOptions[int]{Description: "a"})
		b := ledger.SpawnCall(session, work, ledger.CallOptions[int]{Description: "b"})
		<-started
		<-started

		err = session.Leave(ctx, ledger.LeaveOptions{})
		var pce *ledger.PendingCallsError
		require.ErrorIs(t, err, ledger.ErrPendingCalls, "Leave with pending calls")
		require.ErrorAs(t, err, &pce, "Leave with pending calls")
		assert.ElementsMatch(t, []string{a.ID(), b.ID()}, pce.CallIDs, "the calls PendingCallsError names")
		require.False(t, a.IsCompleted(), "a refused Leave ended calls")
		require.False(t, b.IsCompleted(), "a refused Leave ended calls")

		require.NoError(t, session.Leave(ctx, ledger.LeaveOptions{CancelPendingCalls: true}))
		for _, c := range []*ledger.SpawnedCall[int]{a, b} {
			assert.Truef(t, isClosed(c.Done()), "call %s not done after Leave", c.ID())
			assert.Truef(t, c.IsCancelled(), "call %s not cancelled after Leave", c.ID())
			assert.ErrorIsf(t, c.Err(), ledger.ErrCancelled, "call %s after Leave", c.ID())
			cause, _ := causes.Load(c.ID())
			assert.ErrorIsf(t, cause.(error), ledger.ErrCancelled, "context cause of call %s", c.ID())
			assert.Falsef(t, hasFrame(t, op, c.ID()), "frame of %s left", c.ID())
		}
		assert.False(t, session.HasPendingCalls(), "pending calls after Leave")
		assert.ErrorIs(t, session.Leave(ctx, ledger.LeaveOptions{}), ledger.ErrSessionLeft, "second Leave")
		// The other session goes on.
		_, err = ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 1, nil },
			ledger.CallOptions[int]{}).Wait(ctx)
		require.NoError(t, err)
	})
}

func TestLeaveWaitsForCancelledCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		_, op := newOp(t, e)
		started := make(chan struct{})
		finish := make(chan struct{})
		releaseWork := sync.OnceFunc(func() { close(finish) })
		t.Cleanup(releaseWork) // before Close, should the test fail early
		call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			close(started)
			<-ctx.Done()
			<-finish // slow to wind down
			return 0, context.Cause(ctx)
		}, ledger.CallOptions[int]{})
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := op.Leave(ctx, ledger.LeaveOptions{CancelPendingCalls: true})
		require.ErrorIs(t, err, context.DeadlineExceeded, "Leave while the cancelled call winds down")
		// The session stays, with its (cancelled) call.
		require.Equal(t, 1, op.PendingCallCount(), "pending calls after a timed-out Leave")
		require.False(t, call.IsCompleted(), "call completed after a timed-out Leave")
		releaseWork()
		require.NoError(t, op.Leave(context.Background(), ledger.LeaveOptions{CancelPendingCalls: true}))
		assert.True(t, call.IsCancelled(), "call not cancelled after Leave")
		assert.ErrorIs(t, call.Err(), ledger.ErrCancelled, "call after Leave")
		_, err = op.State(context.Background())
		assert.ErrorIs(t, err, ledger.ErrSessionLeft, "session used after Leave")
	})
}

func TestPendingCallsPerSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		l, op := newOp(t, e)
		other, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		require.False(t, op.HasPendingCalls(), "pending calls before any call")
		require.Zero(t, op.PendingCallCount(), "pending calls before any call")
		require.Nil(t, op.PendingCalls(), "pending calls before any call")
		require.Nil(t, op.PendingSpawnedCalls(), "pending calls before any call")
		plain, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "plain"})
		require.NoError(t, err)
		started := make(chan struct{}, 1)
		spawned := ledger.SpawnCall(op, blockUntilCancelled[int](started), ledger.CallOptions[int]{Description: "spawned"})
		<-started

		require.True(t, op.HasPendingCalls(), "HasPendingCalls")
		require.Equal(t, 2, op.PendingCallCount(), "PendingCallCount")
		infos := op.PendingCalls()
		require.Len(t, infos, 2, "PendingCalls")
		assert.Equal(t, plain.ID(), infos[0].ID, "PendingCalls[0]")
		assert.False(t, infos[0].Spawned, "PendingCalls[0]")
		assert.Equal(t, "plain", infos[0].Description, "PendingCalls[0]")
		assert.Equal(t, spawned.ID(), infos[1].ID, "PendingCalls[1]")
		assert.True(t, infos[1].Spawned, "PendingCalls[1]")
		assert.False(t, infos[1].StartedAt.IsZero(), "PendingCalls[1] without a start time")
		sp := op.PendingSpawnedCalls()
		require.Len(t, sp, 1, "PendingSpawnedCalls")
		assert.Same(t, spawned, sp[0], "PendingSpawnedCalls")
		assert.False(t, other.HasPendingCalls(), "another session sees this session's calls")
		assert.Zero(t, other.PendingCallCount(), "another session sees this session's calls")

		op.PendingSpawnedCalls()[0].Cancel()
		waitClosed(t, spawned.Done(), wait, "the cancelled call")
		assert.Equal(t, 1, op.PendingCallCount(), "pending calls after Cancel")
		require.NoError(t, plain.End(ctx, 1))
		assert.False(t, op.HasPendingCalls(), "pending after End")
	})
}

func TestCloseCancelsSpawnedCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		l, op := newOp(t, e)
		const n = 20
		started := make(chan struct{}, n)
		var returned atomic.Int32
		calls := make([]*ledger.SpawnedCall[int], n)
		for i := range calls {
			calls[i] = ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
				defer returned.Add(1)
				started <- struct{}{}
				<-ctx.Done()
				return 0, context.Cause(ctx)
			}, ledger.CallOptions[int]{})
		}
		for range n {
			<-started
		}
		require.NoError(t, l.Close())
		// Close waited for every call's goroutine.
		assert.Equal(t, int32(n), returned.Load(), "works returned when Close did")
		for _, c := range calls {
			assert.Truef(t, isClosed(c.Done()), "call %s not done after Close", c.ID())
			assert.Truef(t, c.IsCancelled(), "call %s not cancelled after Close", c.ID())
			assert.ErrorIsf(t, c.Err(), ledger.ErrClosed, "call %s after Close", c.ID())
		}
		joined, err := e.Open("bob", ledger.Options{}).JoinOperation(context.Background(), op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		st, err := joined.State(context.Background())
		require.NoError(t, err)
		assert.Empty(t, st.CallFrames, "frames left after Close")
	})
}
