package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

func TestCreateJoinCallComplete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.Open("alice", ledger.Options{})
		b := e.Open("bob", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "build"})
		require.NoError(t, err)
		joined, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		call, err := ledger.StartCall[int](ctx, joined, ledger.CallOptions[int]{Description: "compile"})
		require.NoError(t, err)
		require.NoError(t, call.End(ctx, 3))
		require.ErrorIs(t, call.End(ctx, 3), ledger.ErrCallCompleted, "second End")
		require.NoError(t, joined.Leave(ctx, ledger.LeaveOptions{}))
		require.NoError(t, op.Complete(ctx))
		_, err = b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		assert.ErrorIs(t, err, ledger.ErrOperationCompleted, "join after complete")
	})
}
