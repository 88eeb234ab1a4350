package ledger_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tomdist/ledger"
)

func TestBadArgumentsAreErrorsOnEveryBackend(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		op, err := e.Open("a", ledger.Options{}).CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.StartCall[int](ctx, nil, ledger.CallOptions[int]{}); !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Errorf("StartCall(nil op): %v, want ErrInvalidArgument", err)
		}
		if err := op.Log(ctx, ledger.LogLevel(7), "x"); !errors.Is(err, ledger.ErrInvalidArgument) {
			t.Errorf("Log at level 7: %v, want ErrInvalidArgument", err)
		}
		for _, p := range []string{"", "a\x00b"} {
			if err := op.RegisterTempResource(ctx, p); !errors.Is(err, ledger.ErrInvalidArgument) {
				t.Errorf("RegisterTempResource(%q): %v, want ErrInvalidArgument", p, err)
			}
		}
	})
}

func TestRelativeTempPathIsRecordedAbsolute(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		op, err := e.Open("a", ledger.Options{}).CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Chdir(t.TempDir())
		abs, _ := filepath.Abs("out.tmp")
		if err := os.WriteFile("out.tmp", nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := op.RegisterTempResource(ctx, "out.tmp"); err != nil {
			t.Fatal(err)
		}
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.TempResources) != 1 || d.TempResources[0].Path != abs {
			t.Fatalf("temp resources %+v, want %s", d.TempResources, abs)
		}
		// A failure deletes the file it named, wherever this process is now.
		t.Chdir(t.TempDir())
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
		if err != nil {
			t.Fatal(err)
		}
		if err := call.Fail(ctx, errors.New("boom")); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, op.Failed(), 5*time.Second, "the cleanup of the failure")
		if _, err := os.Stat(abs); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still there after the failure (%v)", abs, err)
		}
	})
}

func TestCompleteRefusedOnceFailing(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("a", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Open("b", ledger.Options{}).JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// b's running call keeps the operation in cleanup for a while.
		if _, err := ledger.StartCall[int](ctx, b, ledger.CallOptions[int]{}); err != nil {
			t.Fatal(err)
		}
		failing, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
		if err != nil {
			t.Fatal(err)
		}
		if err := failing.Fail(ctx, errors.New("broken")); err != nil {
			t.Fatal(err)
		}
		if err := op.Complete(ctx); !errors.Is(err, ledger.ErrOperationFailed) {
			t.Fatalf("Complete of a failing operation: %v, want ErrOperationFailed", err)
		}
		// Once b has seen the failure, its call is over: it leaves without
		// being asked to cancel anything.
		waitClosed(t, b.Failed(), 10*time.Second, "b's Failed()")
		if err := b.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatalf("Leave after the failure: %v", err)
		}
		if d := archived(t, e.dir, op.ID()); d.OperationState != "failed" {
			t.Fatalf("archived as %s, want failed", d.OperationState)
		}
	})
}
