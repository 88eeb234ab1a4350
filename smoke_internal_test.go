package ledger

import (
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := NewLocalLedger(Options{BasePath: dir, ParticipantID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewLocalLedger(Options{BasePath: dir, ParticipantID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	op, err := a.CreateOperation(ctx, CreateOptions{Description: "build"})
	if err != nil {
		t.Fatal(err)
	}
	op2, err := b.JoinOperation(ctx, op.ID(), JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCall[int](ctx, op2, CallOptions[int]{Description: "x"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := op.State(ctx)
	t.Logf("%+v", d)
	if err := c.End(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := op2.Leave(ctx, LeaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := op.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = b.JoinOperation(ctx, op.ID(), JoinOptions{})
	t.Log(err)
}
