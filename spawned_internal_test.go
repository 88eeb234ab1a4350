package ledger

import (
	"context"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSpawnedCallKill attaches a real child process to a spawned call, the
// way the process workers do, and kills it through Kill.
func TestSpawnedCallKill(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err, "this test needs sleep(1)")
	ctx := context.Background()
	l, err := NewLocalLedger(Options{BasePath: t.TempDir(), ParticipantID: "killer"})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, CreateOptions{})
	require.NoError(t, err)
	gate, attached := make(chan struct{}), make(chan struct{})
	call := SpawnCall(op, func(ctx context.Context, c *SpawnedCall[int]) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done(): // the test failed early and closes the ledger
			return 0, ctx.Err()
		}
		cmd := exec.CommandContext(ctx, sleep, "30") // killed by Close should the test fail
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		c.setKill(cmd.Process.Signal)
		close(attached)
		return 0, cmd.Wait()
	}, CallOptions[int]{Contained: true})
	require.False(t, call.Kill(syscall.SIGTERM), "Kill reported success with no process attached")
	close(gate)
	<-attached
	require.True(t, call.Kill(syscall.SIGTERM), "Kill of the attached process failed")
	_, err = call.Wait(ctx)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "Wait must return the child's error")
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.Truef(t, ok, "child ended with %v", ee.ProcessState)
	require.Equalf(t, syscall.SIGTERM, ws.Signal(), "child ended with %v", ee.ProcessState)
	assert.False(t, call.Kill(syscall.SIGTERM), "Kill reported success after the call ended")
}
