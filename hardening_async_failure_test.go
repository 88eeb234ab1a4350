package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// blocker is a callback that blocks until the test frees it; the test
// frees it when it ends, whatever happened.
type blocker struct {
	entered chan struct{} // closed when the callback first runs
	release chan struct{}
	in, out sync.Once
}

func newBlocker(t *testing.T) *blocker {
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.free)
	return b
}

func (b *blocker) block() {
	b.in.Do(func() { close(b.entered) })
	<-b.release
}

func (b *blocker) free() { b.out.Do(func() { close(b.release) }) }

// returnsWhileBlocked runs f and requires it to return while b blocks.
func returnsWhileBlocked(t *testing.T, b *blocker, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	waitClosed(t, b.entered, 5*time.Second, "the callback to run")
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(5 * time.Second):
		require.Failf(t, "waited for a blocked callback", "%s", what)
	}
	select {
	case <-b.release:
		require.Fail(t, "the callback was freed before the test freed it")
	default:
	}
}

func TestBlockingOnFailureDoesNotHoldCallFail(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", ledger.Options{})
	b := newBlocker(t)
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
		OnFailure: func(*ledger.Operation, ledger.OperationFailedInfo) { b.block() },
	}})
	require.NoError(t, err)
	c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err)

	returnsWhileBlocked(t, b, "Call.Fail", func() error { return c.Fail(ctx, errors.New("broken")) })
	info, failed := op.Failure()
	assert.True(t, failed, "Failure not set when Fail returned")
	assert.Equal(t, "broken", info.Reason)
	assert.ErrorIs(t, context.Cause(op.Context()), ledger.ErrOperationFailed)
	waitClosed(t, op.Failed(), 5*time.Second, "Failed")
}

func TestBlockingOnOperationFailedDoesNotHoldCallFail(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", ledger.Options{})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	b := newBlocker(t)
	var cleanedUp sync.WaitGroup
	cleanedUp.Add(1)
	_, err = ledger.StartCall(ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
		OnOperationFailed: func(ledger.OperationFailedInfo) { b.block() },
		OnCleanup:         cleanedUp.Done,
	}})
	require.NoError(t, err)
	failing, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err)

	returnsWhileBlocked(t, b, "Call.Fail", func() error { return failing.Fail(ctx, errors.New("broken")) })
	_, failed := op.Failure()
	assert.True(t, failed)
	// Failed closes once this process has cleaned up: not while a call's
	// OnOperationFailed still runs.
	select {
	case <-op.Failed():
		assert.Fail(t, "Failed closed before the other call's callbacks ran")
	default:
	}
	b.free()
	waitClosed(t, op.Failed(), 5*time.Second, "Failed")
	cleanedUp.Wait()
}

func TestBlockingOnAbortDoesNotHoldSetAbortFlag(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", ledger.Options{})
	b := newBlocker(t)
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
		OnAbort: func(*ledger.Operation) { b.block() },
	}})
	require.NoError(t, err)

	returnsWhileBlocked(t, b, "SetAbortFlag", func() error { return op.SetAbortFlag(ctx, true) })
	assert.True(t, op.IsAborted())
	assert.ErrorIs(t, context.Cause(op.Context()), ledger.ErrAborted)
}

func TestBlockingOnOperationFailedDoesNotHoldSpawnedCall(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", ledger.Options{})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	b := newBlocker(t)
	_, err = ledger.StartCall(ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
		OnOperationFailed: func(ledger.OperationFailedInfo) { b.block() },
	}})
	require.NoError(t, err)
	var cleaned bool
	call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
		return 0, errors.New("work broke")
	}, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{OnCleanup: func() { cleaned = true }}})

	returnsWhileBlocked(t, b, "the spawned call", func() error {
		<-call.Done()
		return nil
	})
	assert.True(t, cleaned, "Done closed before the call's own OnCleanup")
	assert.True(t, call.IsFailed())
	_, failed := op.Failure()
	assert.True(t, failed, "Failure not set when the failing call's Done closed")
	b.free()
	waitClosed(t, op.Failed(), 5*time.Second, "Failed")
}

// TestStateDeliversFailureOnLibraryGoroutines: State and CheckAbort, when
// they are first to see a failure or an abort that another participant
// recorded, return without waiting for the callbacks.
func TestStateDeliversFailureOnLibraryGoroutines(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	// Neither monitor may see the news first: no beats, no events, no
	// polls (a directory polled once an hour).
	slow := ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour, LivenessPoll: time.Hour, PollDirectory: true}
	alice := e.Open("alice", slow)
	bob := e.Open("bob", slow)
	aborted, failedCB := newBlocker(t), newBlocker(t)
	op, err := alice.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
		OnAbort:   func(*ledger.Operation) { aborted.block() },
		OnFailure: func(*ledger.Operation, ledger.OperationFailedInfo) { failedCB.block() },
	}})
	require.NoError(t, err)
	joined, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	// Else alice's monitor, started late, may read the abort first.
	waitClosed(t, ledger.MonitorRead(op), 5*time.Second, "alice's monitor to read the operation")

	require.NoError(t, joined.SetAbortFlag(ctx, true))
	require.False(t, op.IsAborted(), "alice heard of the abort before CheckAbort")
	returnsWhileBlocked(t, aborted, "CheckAbort", func() error {
		if v, err := op.CheckAbort(ctx); err != nil || !v {
			return fmt.Errorf("CheckAbort = %t, %v; want true", v, err)
		}
		return nil
	})
	assert.True(t, op.IsAborted())

	c, err := ledger.StartCall(ctx, joined, ledger.CallOptions[int]{})
	require.NoError(t, err)
	require.NoError(t, c.Fail(ctx, errors.New("bob broke")))
	returnsWhileBlocked(t, failedCB, "State", func() error {
		_, err := op.State(ctx)
		return err
	})
	_, failed := op.Failure()
	assert.True(t, failed)
	waitClosed(t, op.Failed(), 5*time.Second, "Failed")
}
