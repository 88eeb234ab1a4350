package ledger_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

func TestBadArgumentsAreErrorsOnEveryBackend(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		op, err := e.Open("a", ledger.Options{}).CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		_, err = ledger.StartCall[int](ctx, nil, ledger.CallOptions[int]{})
		assert.ErrorIs(t, err, ledger.ErrInvalidArgument, "StartCall(nil op)")
		assert.ErrorIs(t, op.Log(ctx, ledger.LogLevel(7), "x"), ledger.ErrInvalidArgument, "Log at level 7")
		for _, p := range []string{"", "a\x00b"} {
			assert.ErrorIsf(t, op.RegisterTempResource(ctx, p), ledger.ErrInvalidArgument, "RegisterTempResource(%q)", p)
		}
	})
}

func TestRelativeTempPathIsRecordedAbsolute(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		op, err := e.Open("a", ledger.Options{}).CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		t.Chdir(t.TempDir())
		abs, _ := filepath.Abs("out.tmp")
		require.NoError(t, os.WriteFile("out.tmp", nil, 0o644))
		require.NoError(t, op.RegisterTempResource(ctx, "out.tmp"))
		d, err := op.State(ctx)
		require.NoError(t, err)
		require.Len(t, d.TempResources, 1)
		require.Equal(t, abs, d.TempResources[0].Path, "temp resource")
		// A failure deletes the file it named, wherever this process is now.
		t.Chdir(t.TempDir())
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
		require.NoError(t, err)
		require.NoError(t, call.Fail(ctx, errors.New("boom")))
		waitClosed(t, op.Failed(), 5*time.Second, "the cleanup of the failure")
		_, err = os.Stat(abs)
		assert.ErrorIsf(t, err, os.ErrNotExist, "%s still there after the failure", abs)
	})
}

func TestCompleteRefusedOnceFailing(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("a", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		b, err := e.Open("b", ledger.Options{}).JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		// b's running call keeps the operation in cleanup for a while.
		_, err = ledger.StartCall[int](ctx, b, ledger.CallOptions[int]{})
		require.NoError(t, err)
		failing, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
		require.NoError(t, err)
		require.NoError(t, failing.Fail(ctx, errors.New("broken")))
		require.ErrorIs(t, op.Complete(ctx), ledger.ErrOperationFailed, "Complete of a failing operation")
		// Once b has seen the failure, its call is over: it leaves without
		// being asked to cancel anything.
		waitClosed(t, b.Failed(), 10*time.Second, "b's Failed()")
		require.NoError(t, b.Leave(ctx, ledger.LeaveOptions{}), "Leave after the failure")
		assert.Equal(t, "failed", archived(t, e.dir, op.ID()).OperationState, "archived state")
	})
}
