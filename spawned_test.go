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

	"github.com/tomdist/ledger"
)

// wait is how long a test waits for an event before it fails.
const wait = 10 * time.Second

// newOp opens a ledger for alice on e and creates an operation.
func newOp(t *testing.T, e *env) (ledger.Ledger, *ledger.Operation) {
	t.Helper()
	l := e.Open("alice", ledger.Options{})
	op, err := l.CreateOperation(context.Background(), ledger.CreateOptions{Description: "spawn test"})
	if err != nil {
		t.Fatal(err)
	}
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
	if err != nil {
		t.Errorf("read log: %v", err)
	}
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
	if err != nil {
		t.Errorf("state: %v", err)
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
		if call.ID() == "" || call.Description() != "answer" || call.StartedAt().IsZero() {
			t.Fatalf("id %q, description %q, started %v", call.ID(), call.Description(), call.StartedAt())
		}
		if !hasFrame(t, op, call.ID()) {
			t.Fatal("no frame after SpawnCall returned")
		}
		if call.IsCompleted() {
			t.Fatal("completed before the work returned")
		}
		close(ready)
		v, err := call.Wait(ctx)
		if err != nil || v != 42 {
			t.Fatalf("Wait = %d, %v; want 42, nil", v, err)
		}
		if !frameFirst.Load() || !spawnedLogged.Load() {
			t.Fatalf("when the work started: frame %t, CALL_SPAWNED %t", frameFirst.Load(), spawnedLogged.Load())
		}
		if completedWith.Load() != 42 || doneBeforeCompletion.Load() || frameAtCompletion.Load() {
			t.Fatalf("OnCompletion(%d): Done closed %t, frame present %t; want 42, false, false",
				completedWith.Load(), doneBeforeCompletion.Load(), frameAtCompletion.Load())
		}
		if r, ok := call.Result(); !ok || r != 42 {
			t.Fatalf("Result = %d, %t", r, ok)
		}
		if !call.IsCompleted() || !call.IsSuccess() || call.IsFailed() || call.IsCancelled() || call.Err() != nil {
			t.Fatalf("state: completed %t success %t failed %t cancelled %t err %v",
				call.IsCompleted(), call.IsSuccess(), call.IsFailed(), call.IsCancelled(), call.Err())
		}
		if evs := callEvents(t, e, op.ID(), call.ID()); !slices.Equal(evs, []string{"CALL_SPAWNED", "CALL_COMPLETED"}) {
			t.Fatalf("events %v", evs)
		}
		if op.HasPendingCalls() {
			t.Fatalf("pending after success: %v", op.PendingCalls())
		}
		// The frame is gone when Wait returns, so Complete cannot race it.
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
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
		if !errors.Is(err, errDisk) || !errors.As(err, &cfe) || cfe.CallID != bad.ID() {
			t.Fatalf("Wait error %v; want a *CallFailedError of %s wrapping errDisk", err, bad.ID())
		}
		if !bad.IsFailed() || bad.IsSuccess() || bad.IsCancelled() || bad.Err() != err {
			t.Fatal("bad call not failed")
		}
		// The failure is known when bad's Done closes; Failed closes once
		// every other call heard of it.
		info, ok := op.Failure()
		if !ok || !slices.Equal(info.CrashedCallIDs, []string{bad.ID()}) || !strings.Contains(info.Reason, "disk full") {
			t.Fatalf("Failure = %+v, %t", info, ok)
		}
		waitClosed(t, op.Failed(), 5*time.Second, "Failed")
		if p := otherFailed.Load(); p == nil || !slices.Equal(p.CrashedCallIDs, []string{bad.ID()}) {
			t.Fatalf("other call's OnOperationFailed got %v", p)
		}
		if badCleanup.Load() != 1 || badOpFailed.Load() != 0 {
			t.Fatalf("failing call: OnCleanup ran %d times, OnOperationFailed %d; want 1, 0", badCleanup.Load(), badOpFailed.Load())
		}
		_, err = other.Wait(ctx)
		var cce *ledger.CallCancelledError
		if !other.IsCancelled() || !errors.Is(err, ledger.ErrCancelled) || !errors.Is(err, ledger.ErrOperationFailed) || !errors.As(err, &cce) {
			t.Fatalf("other call: cancelled %t, err %v; want cancelled by the failure", other.IsCancelled(), err)
		}
		if otherCleanup.Load() != 1 {
			t.Fatalf("other call's OnCleanup ran %d times, want 1", otherCleanup.Load())
		}
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.OperationState == "running" || d.Failure == nil {
			t.Fatalf("ledger state %q, failure %v; want the failure recorded", d.OperationState, d.Failure)
		}
		if evs := callEvents(t, e, op.ID(), bad.ID()); !slices.Contains(evs, "CALL_FAILED") {
			t.Fatalf("events of the failing call: %v", evs)
		}
		// A failed operation takes no new calls.
		late := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 1, nil }, ledger.CallOptions[int]{})
		if _, err := late.Wait(ctx); !errors.Is(err, ledger.ErrOperationFailed) || !late.IsFailed() {
			t.Fatalf("spawn on a failed operation: %v", err)
		}
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
			OnCompletion: func(int) { t.Error("OnCompletion ran without a frame removed") },
		}})
		// Someone removed the frame under the call: its result cannot be
		// recorded, so the call fails, alone.
		if err := op.DeleteCallFrame(ctx, call.ID()); err != nil {
			t.Fatal(err)
		}
		close(release)
		if _, err := call.Wait(ctx); !errors.Is(err, ledger.ErrCallNotFound) || !call.IsFailed() {
			t.Fatalf("Wait error %v, want ErrCallNotFound", err)
		}
		if isClosed(op.Failed()) {
			t.Fatal("the operation failed")
		}
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
		if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "panicInWork") {
			t.Fatalf("Wait error %v; want a *PanicError with value boom and the stack", err)
		}
		if !call.IsFailed() {
			t.Fatal("call not failed")
		}
		waitClosed(t, op.Failed(), wait, "operation failure after a panic")
		if info, _ := op.Failure(); !strings.Contains(info.Reason, "boom") {
			t.Fatalf("failure reason %q", info.Reason)
		}
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
		if _, err := call.Wait(context.Background()); err == nil || !call.IsFailed() {
			t.Fatalf("Goexit in the work: err %v, failed %t", err, call.IsFailed())
		}
		if hasFrame(t, op, call.ID()) {
			t.Fatal("frame left behind")
		}
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
				if err != nil || v != 7 || !call.IsSuccess() {
					t.Fatalf("Wait = %d, %v, success %t; want the fallback 7", v, err, call.IsSuccess())
				}
				if !tc.want(crashedWith) {
					t.Fatalf("OnCallCrashed got %v", crashedWith)
				}
				if completedWith.Load() != 7 {
					t.Fatalf("OnCompletion got %d", completedWith.Load())
				}
				if isClosed(op.Failed()) {
					t.Fatal("a fallback failed the operation")
				}
				if evs := callEvents(t, e, op.ID(), call.ID()); !slices.Equal(evs, []string{"CALL_SPAWNED", "CALL_COMPLETED"}) {
					t.Fatalf("events %v", evs)
				}
				// No fallback (ok == false): the call fails as usual.
				declined := ledger.SpawnCall(op, tc.work, ledger.CallOptions[int]{Contained: true, Callback: ledger.CallCallback[int]{
					OnCallCrashed: func(error) (int, bool) { return 7, false },
				}})
				if _, err := declined.Wait(ctx); !tc.want(errors.Unwrap(err)) || !declined.IsFailed() {
					t.Fatalf("declined fallback: %v", err)
				}
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
		if _, err := bad.Wait(ctx); err == nil || !bad.IsFailed() {
			t.Fatalf("contained call: %v", err)
		}
		if cleanup.Load() != 1 {
			t.Fatalf("OnCleanup ran %d times", cleanup.Load())
		}
		if isClosed(op.Failed()) || other.IsCompleted() {
			t.Fatal("a contained failure failed the operation")
		}
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.OperationState != "running" || d.Failure != nil {
			t.Fatalf("ledger state %q, failure %v", d.OperationState, d.Failure)
		}
		if evs := callEvents(t, e, op.ID(), bad.ID()); !slices.Contains(evs, "CALL_FAILED") {
			t.Fatalf("events %v", evs)
		}
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
			if !errors.Is(err, ledger.ErrCancelled) || !errors.As(err, &cce) || cce.CallID != call.ID() {
				t.Fatalf("Wait error %v; want a *CallCancelledError", err)
			}
			if cause.Load() != ledger.ErrCancelled {
				t.Fatalf("context cause %v, want ErrCancelled", cause.Load())
			}
			if !call.IsCancelled() || call.IsFailed() || call.IsSuccess() || !call.IsCompleted() {
				t.Fatal("state after Cancel")
			}
			if cleanup.Load() != 1 || hasFrame(t, op, call.ID()) || isClosed(op.Failed()) {
				t.Fatalf("OnCleanup %d, frame left %t, operation failed %t", cleanup.Load(), hasFrame(t, op, call.ID()), isClosed(op.Failed()))
			}
			if evs := callEvents(t, e, op.ID(), call.ID()); !slices.Equal(evs, []string{"CALL_SPAWNED", "CALL_CANCELLED"}) {
				t.Fatalf("events %v", evs)
			}
		})

		t.Run("right after SpawnCall", func(t *testing.T) {
			// Cancel races the start of the work: whether the work runs or
			// not, the call ends cancelled.
			call := ledger.SpawnCall(op, blockUntilCancelled[int](nil), ledger.CallOptions[int]{})
			call.Cancel()
			if _, err := call.Wait(ctx); !errors.Is(err, ledger.ErrCancelled) || !call.IsCancelled() {
				t.Fatalf("Wait error %v", err)
			}
			if hasFrame(t, op, call.ID()) {
				t.Fatal("frame left")
			}
		})

		t.Run("after completion", func(t *testing.T) {
			call := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 5, nil }, ledger.CallOptions[int]{})
			if v, err := call.Wait(ctx); err != nil || v != 5 {
				t.Fatalf("Wait = %d, %v", v, err)
			}
			call.Cancel()
			if v, err := call.Wait(ctx); err != nil || v != 5 || !call.IsSuccess() || call.IsCancelled() {
				t.Fatalf("after Cancel: %d, %v, success %t", v, err, call.IsSuccess())
			}
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
		if !errors.Is(err, ledger.ErrAborted) || !errors.Is(err, ledger.ErrCancelled) || !call.IsCancelled() {
			t.Fatalf("Wait error %v; want cancelled by the abort", err)
		}
		if ran.Load() {
			t.Fatal("the work ran with a cancelled context")
		}
		if hasFrame(t, op, call.ID()) {
			t.Fatal("frame left")
		}
		if evs := callEvents(t, e, op.ID(), call.ID()); !slices.Equal(evs, []string{"CALL_SPAWNED", "CALL_CANCELLED"}) {
			t.Fatalf("events %v", evs)
		}
	})
}

func TestSpawnCallContextCauses(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, l ledger.Ledger, op *ledger.Operation)
		want error
	}{
		{"abort", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			if err := op.SetAbortFlag(context.Background(), true); err != nil {
				t.Fatal(err)
			}
		}, ledger.ErrAborted},
		{"close", func(t *testing.T, l ledger.Ledger, _ *ledger.Operation) {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}, ledger.ErrClosed},
		{"complete", func(t *testing.T, _ ledger.Ledger, op *ledger.Operation) {
			if err := op.Complete(context.Background()); err != nil {
				t.Fatal(err)
			}
		}, ledger.ErrOperationCompleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, e *env) {
				l := e.Open("alice", ledger.Options{})
				op, err := l.CreateOperation(context.Background(), ledger.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
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
				if !errors.Is(err, tc.want) || !errors.Is(err, ledger.ErrCancelled) || !call.IsCancelled() {
					t.Fatalf("Wait error %v; want cancelled with %v", err, tc.want)
				}
				if c, _ := cause.Load().(error); !errors.Is(c, tc.want) {
					t.Fatalf("context cause %v, want %v", c, tc.want)
				}
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
			if _, err := call.Wait(ctx); !errors.Is(err, tc.want) || !call.IsFailed() {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}

		second, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.SpawnCall(second, ok, ledger.CallOptions[int]{}).Wait(ctx); !errors.Is(err, ledger.ErrSessionLeft) {
			t.Errorf("left session: %v", err)
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.SpawnCall(op, ok, ledger.CallOptions[int]{}).Wait(ctx); !errors.Is(err, ledger.ErrOperationCompleted) {
			t.Errorf("completed operation: %v", err)
		}
		l2 := e.Open("bob", ledger.Options{})
		op2, err := l2.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l2.Close()
		if _, err := ledger.SpawnCall(op2, ok, ledger.CallOptions[int]{}).Wait(ctx); !errors.Is(err, ledger.ErrClosed) {
			t.Errorf("closed ledger: %v", err)
		}
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
			t.Fatal("Sync did not return after the operation failed")
		}
		r := got.r
		if got.err != nil {
			t.Fatal(got.err)
		}
		if calls[0].IsCompleted() {
			t.Fatal("the stubborn call ended before Sync returned")
		}
		releaseStubborn()
		if !r.OperationFailed || len(r.Failed) != 1 || r.Failed[0] != ledger.Spawned(bad) || len(r.Unknown) != n || len(r.Successful) != 0 {
			t.Fatalf("SyncResult: failed %d, unknown %d, successful %d, operation failed %t", len(r.Failed), len(r.Unknown), len(r.Successful), r.OperationFailed)
		}
		if r.AllSucceeded() || !r.HasFailed() || r.AllResolved() {
			t.Fatal("SyncResult predicates")
		}
		if !slices.Equal(hooks, []string{"failed", "completion"}) || !slices.Equal(hookInfo.CrashedCallIDs, []string{bad.ID()}) {
			t.Fatalf("hooks %v, info %+v", hooks, hookInfo)
		}
		for _, c := range r.Unknown {
			waitClosed(t, c.Done(), wait, "a cancelled call to end")
			if !c.IsCancelled() || !errors.Is(c.Err(), ledger.ErrOperationFailed) {
				t.Fatalf("call %s: cancelled %t, err %v", c.ID(), c.IsCancelled(), c.Err())
			}
		}
		// Each call's OnOperationFailed ran before its Done closed.
		if opFailed.Load() != n {
			t.Fatalf("OnOperationFailed ran for %d calls, want %d", opFailed.Load(), n)
		}
		if op.HasPendingCalls() {
			t.Fatalf("pending calls after the failure: %v", op.PendingCalls())
		}
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
		if err != nil {
			t.Fatal(err)
		}
		if !r.AllSucceeded() || len(r.Successful) != n {
			t.Fatalf("succeeded %d of %d; failed %d, unknown %d", len(r.Successful), n, len(r.Failed), len(r.Unknown))
		}
		for i, c := range calls {
			if v, ok := c.Result(); !ok || v != i*i {
				t.Fatalf("call %d: %d, %t", i, v, ok)
			}
		}
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.CallFrames) != 0 {
			t.Fatalf("%d frames left", len(d.CallFrames))
		}
		ev := count(logEvents(opLog(t, e, op.ID())))
		if ev["CALL_SPAWNED"] != n || ev["CALL_COMPLETED"] != n {
			t.Fatalf("log: %d CALL_SPAWNED, %d CALL_COMPLETED", ev["CALL_SPAWNED"], ev["CALL_COMPLETED"])
		}
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
			OnOperationFailed: func(ledger.OperationFailedInfo) { t.Error("OnOperationFailed ran without a failure") },
			OnCompletion:      func(r ledger.SyncResult) { completion = &r },
		}, n, s, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Successful) != 2 || r.Successful[0] != ledger.Spawned(n) || r.Successful[1] != ledger.Spawned(s) ||
			len(r.Failed) != 1 || r.Failed[0] != ledger.Spawned(f) || r.OperationFailed {
			t.Fatalf("SyncResult %+v", r)
		}
		if r.AllSucceeded() || !r.HasFailed() || !r.AllResolved() {
			t.Fatal("SyncResult predicates")
		}
		if completion == nil || len(completion.Successful) != 2 {
			t.Fatalf("OnCompletion got %v", completion)
		}
		one, err := op.AwaitCall(ctx, s)
		if err != nil || !one.AllSucceeded() || len(one.Successful) != 1 {
			t.Fatalf("AwaitCall = %+v, %v", one, err)
		}
		if r, err := op.Sync(ctx); err != nil || !r.AllSucceeded() {
			t.Fatalf("Sync of nothing = %+v, %v", r, err)
		}
		var nilCall *ledger.SpawnedCall[int]
		for _, bad := range [][]ledger.Spawned{{nil}, {n, nilCall}, {&ledger.SpawnedCall[int]{}}} {
			if _, err := op.Sync(ctx, bad...); !errors.Is(err, ledger.ErrInvalidArgument) {
				t.Errorf("Sync(%v) = %v, want ErrInvalidArgument", bad, err)
			}
		}
		if _, err := op.AwaitCall(ctx, nil); !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Errorf("AwaitCall(nil) = %v", err)
		}
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
			if results[i] != "done" || errs[i] != nil {
				t.Fatalf("waiter %d: %q, %v", i, results[i], errs[i])
			}
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
		if _, err := call.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait past the deadline: %v", err)
		}
		r, err := op.SyncWith(ctx, ledger.SyncOptions{
			OnCompletion: func(ledger.SyncResult) { t.Error("OnCompletion ran after the deadline") },
		}, call)
		if !errors.Is(err, context.DeadlineExceeded) || len(r.Unknown) != 1 || r.AllResolved() {
			t.Fatalf("Sync past the deadline: %+v, %v", r, err)
		}
		cause := errors.New("gave up")
		cctx, ccancel := context.WithCancelCause(context.Background())
		ccancel(cause)
		if _, err := call.Wait(cctx); err != cause {
			t.Fatalf("Wait after cancel with cause: %v", err)
		}
		if call.IsCompleted() || !hasFrame(t, op, call.ID()) {
			t.Fatal("a caller's deadline ended the call")
		}
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
					OnOperationFailed: func(ledger.OperationFailedInfo) { t.Error("OnOperationFailed ran") },
				})
				if v != tc.want {
					t.Fatalf("result %d, want %d", v, tc.want)
				}
				switch want := tc.wantErr.(type) {
				case nil:
					if err != nil {
						t.Fatalf("error %v", err)
					}
				case *ledger.PanicError:
					if !errors.As(err, &want) || want.Value != "boom" {
						t.Fatalf("error %v, want a *PanicError", err)
					}
				default:
					if !errors.Is(err, want) {
						t.Fatalf("error %v, want %v", err, want)
					}
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
			OnError: func(error) (int, bool) { t.Error("OnError ran for an operation failure"); return 0, false },
		})
		var ofe *ledger.OperationFailedError
		if v != 0 || !errors.As(err, &ofe) || !errors.Is(err, ledger.ErrOperationFailed) {
			t.Fatalf("WaitForCompletion = %d, %v; want an *OperationFailedError", v, err)
		}
		if !slices.Equal(ofe.Info.CrashedCallIDs, []string{bad.ID()}) || ofe.Info.OperationID != op.ID() {
			t.Fatalf("failure info %+v", ofe.Info)
		}
		if !slices.Equal(hook, []string{"failed:" + bad.ID()}) {
			t.Fatalf("OnOperationFailed calls %v", hook)
		}
		// The work's context is cancelled by the failure.
		waitFor(t, wait, "the work to see the failure", func() bool { return workCause.Load() != nil })
		if c := workCause.Load().(error); !errors.Is(c, ledger.ErrOperationFailed) {
			t.Fatalf("work context cause %v", c)
		}
		// Once failed, WaitForCompletion fails at once without running work.
		hook = nil
		_, err = ledger.WaitForCompletion(ctx, op, func(context.Context) (int, error) {
			t.Error("work ran on a failed operation")
			return 0, nil
		}, ledger.WaitOptions[int]{OnOperationFailed: func(ledger.OperationFailedInfo) { hook = append(hook, "failed") }})
		if !errors.As(err, &ofe) || len(hook) != 1 {
			t.Fatalf("on a failed operation: %v, hooks %v", err, hook)
		}
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
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the deadline", err)
		}
		waitFor(t, wait, "the work to see its context end", sawDone.Load)
		if _, err := ledger.WaitForCompletion[int](ctx, op, nil, ledger.WaitOptions[int]{}); !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Fatalf("nil work: %v", err)
		}
		if _, err := ledger.WaitForCompletion(ctx, nil, func(context.Context) (int, error) { return 0, nil }, ledger.WaitOptions[int]{}); !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Fatalf("nil operation: %v", err)
		}
	})
}

func TestLeaveWithPendingCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		l, op := newOp(t, e)
		session, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
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
		if !errors.Is(err, ledger.ErrPendingCalls) || !errors.As(err, &pce) {
			t.Fatalf("Leave with pending calls: %v", err)
		}
		if want := []string{a.ID(), b.ID()}; !sameIDs(pce.CallIDs, want) {
			t.Fatalf("PendingCallsError names %v, want %v", pce.CallIDs, want)
		}
		if a.IsCompleted() || b.IsCompleted() {
			t.Fatal("a refused Leave ended calls")
		}

		if err := session.Leave(ctx, ledger.LeaveOptions{CancelPendingCalls: true}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*ledger.SpawnedCall[int]{a, b} {
			if !isClosed(c.Done()) || !c.IsCancelled() || !errors.Is(c.Err(), ledger.ErrCancelled) {
				t.Fatalf("call %s after Leave: done %t, cancelled %t, err %v", c.ID(), isClosed(c.Done()), c.IsCancelled(), c.Err())
			}
			if cause, _ := causes.Load(c.ID()); !errors.Is(cause.(error), ledger.ErrCancelled) {
				t.Fatalf("cause %v", cause)
			}
			if hasFrame(t, op, c.ID()) {
				t.Fatalf("frame of %s left", c.ID())
			}
		}
		if session.HasPendingCalls() {
			t.Fatal("pending calls after Leave")
		}
		if err := session.Leave(ctx, ledger.LeaveOptions{}); !errors.Is(err, ledger.ErrSessionLeft) {
			t.Fatalf("second Leave: %v", err)
		}
		// The other session goes on.
		if _, err := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 1, nil },
			ledger.CallOptions[int]{}).Wait(ctx); err != nil {
			t.Fatal(err)
		}
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
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Leave while the cancelled call winds down: %v, want the deadline", err)
		}
		// The session stays, with its (cancelled) call.
		if op.PendingCallCount() != 1 || call.IsCompleted() {
			t.Fatalf("after a timed-out Leave: %d pending, completed %t", op.PendingCallCount(), call.IsCompleted())
		}
		releaseWork()
		if err := op.Leave(context.Background(), ledger.LeaveOptions{CancelPendingCalls: true}); err != nil {
			t.Fatal(err)
		}
		if !call.IsCancelled() || !errors.Is(call.Err(), ledger.ErrCancelled) {
			t.Fatalf("call after Leave: %v", call.Err())
		}
		if _, err := op.State(context.Background()); !errors.Is(err, ledger.ErrSessionLeft) {
			t.Fatalf("session used after Leave: %v", err)
		}
	})
}

func sameIDs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestPendingCallsPerSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		l, op := newOp(t, e)
		other, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if op.HasPendingCalls() || op.PendingCallCount() != 0 || op.PendingCalls() != nil || op.PendingSpawnedCalls() != nil {
			t.Fatal("pending calls before any call")
		}
		plain, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "plain"})
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{}, 1)
		spawned := ledger.SpawnCall(op, blockUntilCancelled[int](started), ledger.CallOptions[int]{Description: "spawned"})
		<-started

		if !op.HasPendingCalls() || op.PendingCallCount() != 2 {
			t.Fatalf("pending: %t, %d", op.HasPendingCalls(), op.PendingCallCount())
		}
		infos := op.PendingCalls()
		if len(infos) != 2 || infos[0].ID != plain.ID() || infos[0].Spawned || infos[0].Description != "plain" ||
			infos[1].ID != spawned.ID() || !infos[1].Spawned || infos[1].StartedAt.IsZero() {
			t.Fatalf("PendingCalls %+v", infos)
		}
		if sp := op.PendingSpawnedCalls(); len(sp) != 1 || sp[0] != ledger.Spawned(spawned) {
			t.Fatalf("PendingSpawnedCalls %v", sp)
		}
		if other.HasPendingCalls() || other.PendingCallCount() != 0 {
			t.Fatal("another session sees this session's calls")
		}

		op.PendingSpawnedCalls()[0].Cancel()
		waitClosed(t, spawned.Done(), wait, "the cancelled call")
		if op.PendingCallCount() != 1 {
			t.Fatalf("after Cancel: %d pending", op.PendingCallCount())
		}
		if err := plain.End(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if op.HasPendingCalls() {
			t.Fatal("pending after End")
		}
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
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		// Close waited for every call's goroutine.
		if returned.Load() != n {
			t.Fatalf("%d of %d works returned when Close did", returned.Load(), n)
		}
		for _, c := range calls {
			if !isClosed(c.Done()) || !c.IsCancelled() || !errors.Is(c.Err(), ledger.ErrClosed) {
				t.Fatalf("call %s after Close: done %t, err %v", c.ID(), isClosed(c.Done()), c.Err())
			}
		}
		joined, err := e.Open("bob", ledger.Options{}).JoinOperation(context.Background(), op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := joined.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.CallFrames) != 0 {
			t.Fatalf("%d frames left after Close", len(st.CallFrames))
		}
	})
}
