package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

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
				if err != nil || !aborted {
					t.Errorf("CheckAbort in OnAbort: %v, %v", aborted, err)
				}
				done <- "abort"
			},
			OnFailure: func(op *ledger.Operation, _ ledger.OperationFailedInfo) {
				if _, err := op.State(ctx); err != nil && !errors.Is(err, ledger.ErrOperationFailed) {
					t.Errorf("State in OnFailure: %v", err)
				}
				done <- "failure"
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		other, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Contained: true})
		if err != nil {
			t.Fatal(err)
		}
		failing, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnCleanup: func() { done <- "cleanup" },
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnOperationFailed: func(ledger.OperationFailedInfo) {
				// Failing another call from here re-enters the failure.
				other.Fail(ctx, errors.New("given up"))
				done <- "opfailed"
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := op.SetAbortFlag(ctx, true); err != nil {
			t.Fatal(err)
		}
		if err := failing.Fail(ctx, errors.New("broken")); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"abort": true, "failure": true, "cleanup": true, "opfailed": true}
		deadline := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case ev := <-done:
				delete(want, ev)
			case <-deadline:
				t.Fatalf("callbacks still missing (deadlocked?): %v", want)
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- l.Close() }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close hangs after re-entrant callbacks")
		}
	})
}
