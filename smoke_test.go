package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tomdist/ledger"
)

func TestCreateJoinCallComplete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.Open("alice", ledger.Options{})
		b := e.Open("bob", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "build"})
		if err != nil {
			t.Fatal(err)
		}
		joined, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		call, err := ledger.StartCall[int](ctx, joined, ledger.CallOptions[int]{Description: "compile"})
		if err != nil {
			t.Fatal(err)
		}
		if err := call.End(ctx, 3); err != nil {
			t.Fatal(err)
		}
		if err := call.End(ctx, 3); !errors.Is(err, ledger.ErrCallCompleted) {
			t.Fatalf("second End: %v, want ErrCallCompleted", err)
		}
		if err := joined.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{}); !errors.Is(err, ledger.ErrOperationCompleted) {
			t.Fatalf("join after complete: %v, want ErrOperationCompleted", err)
		}
	})
}
