package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tomdist/ledger"
)

// mountTmpfs mounts a tmpfs of the given size (such as "256k") on a new
// directory and unmounts it when the test ends. It needs root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size), "mounting a tmpfs (needs root)")
	t.Cleanup(func() { assert.NoError(t, unix.Unmount(dir, 0)) })
	return dir
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			return
		}
	}
}

func TestCallEndRetriedAfterDiskFull(t *testing.T) {
	ctx := context.Background()
	dir := mountTmpfs(t, "256k")
	l, err := ledger.Connect(ctx, ledger.Options{
		BasePath: dir, ParticipantID: "alice",
		HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 400 * time.Millisecond, LivenessPoll: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err)
	// No beat may replace the state file while the disk fills: a rename
	// over it would free the space End needs.
	op.StopHeartbeat()

	fill := filepath.Join(dir, "fill")
	fillDisk(t, fill)
	// Appends fill the last page of the journal before they need a new
	// one: log until the journal is full too.
	for i := 0; ; i++ {
		err := op.Log(ctx, ledger.LogInfo, "x") // smaller than the record of End
		if err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
		require.Less(t, i, 10000, "the disk never filled")
	}
	err = c.End(ctx, 1)
	require.ErrorIs(t, err, syscall.ENOSPC)
	assert.False(t, c.IsCompleted())
	assert.ErrorIs(t, op.Leave(ctx, ledger.LeaveOptions{}), ledger.ErrPendingCalls, "the call still runs")

	require.NoError(t, os.Remove(fill))
	require.NoError(t, c.End(ctx, 1), "End once the space is back")
	assert.True(t, c.IsCompleted())
	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.Empty(t, d.CallFrames)
	assert.Equal(t, 1, count(logEvents(operationLog(t, dir, op.ID())))["CALL_ENDED"])

	closed = true
	require.NoError(t, l.Close(), "Close after the call ended")
	d = readState(t, dir, op.ID())
	assert.Equal(t, ledger.StateRunning, d.OperationState, "the operation failed")
	require.Len(t, d.Participants, 1)
	assert.Equal(t, ledger.ParticipantLeft, d.Participants[0].State)
}
