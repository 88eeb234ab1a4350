package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// Callbacks run with no lock held: they may call back into the library,
// and a failure or abort that they cause again is a no-op, not a deadlock.
func TestCallbacksMayUseTheOperation(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		done := make(chan string, 8)
		var other *ledger.Call[int]
		l := e.Open("a", ledger.Options{})
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
			OnAbort: func(op *ledger.Operation) {
				aborted, err := op.CheckAbort(ctx)
				assert.NoError(t, err, "CheckAbort in OnAbort")
				assert.True(t, aborted, "CheckAbort in OnAbort")
				done <- "abort"
			},
			OnFailure: func(op *ledger.Operation, _ ledger.OperationFailedInfo) {
				if _, err := op.State(ctx); err != nil {
					assert.ErrorIs(t, err, ledger.ErrOperationFailed, "State in OnFailure")
				}
				done <- "failure"
			},
		}})
		require.NoError(t, err)
		other, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Contained: true})
		require.NoError(t, err)
		failing, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnCleanup: func() { done <- "cleanup" },
		}})
		require.NoError(t, err)
		_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnOperationFailed: func(ledger.OperationFailedInfo) {
				// Failing another call from here re-enters the failure.
				other.Fail(ctx, errors.New("given up"))
				done <- "opfailed"
			},
		}})
		require.NoError(t, err)
		require.NoError(t, op.SetAbortFlag(ctx, true))
		require.NoError(t, failing.Fail(ctx, errors.New("broken")))
		want := map[string]bool{"abort": true, "failure": true, "cleanup": true, "opfailed": true}
		deadline := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case ev := <-done:
				delete(want, ev)
			case <-deadline:
				require.Failf(t, "callbacks still missing (deadlocked?)", "%v", want)
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- l.Close() }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			require.Fail(t, "Close hangs after re-entrant callbacks")
		}
	})
}
