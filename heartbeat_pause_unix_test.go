//go:build unix

package ledger_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// A participant paused (SIGSTOP, which only Unix has) shorter than its
// threshold is not declared crashed; one paused longer is.
func TestPausedParticipant(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		const stale = "1500ms"
		o := ledger.Options{StaleThreshold: 1500 * time.Millisecond}
		init := e.Open("init", o)
		op, err := init.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		p := startParticipant(t, e, op.ID(), "sleeper", "CALLS=1", "STALE="+stale)

		// Below the threshold: stopped for most of it (the pause itself is
		// what is tested, so this waits for time to pass), it must not be
		// declared crashed.
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP)
		time.Sleep(1200 * time.Millisecond)
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
		beatOf := func() time.Time {
			d, err := op.State(ctx)
			require.NoError(t, err)
			for _, pp := range d.Participants {
				if pp.ParticipantID == "sleeper" {
					return pp.LastHeartbeat
				}
			}
			require.Fail(t, "no sleeper")
			return time.Time{}
		}
		last := beatOf()
		waitFor(t, 10*time.Second, "the sleeper to beat again", func() bool { return beatOf().After(last) })
		d, err := op.State(ctx)
		require.NoError(t, err)
		require.Equal(t, "running", d.OperationState, "state after a short pause")
		require.Equal(t, "active", d.Participants[1].State, "sleeper after a short pause")

		// Above the threshold: declared crashed, the operation fails.
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP)
		defer syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
		waitClosed(t, op.Failed(), 20*time.Second, "Failed() after a long pause")
		info, _ := op.Failure()
		assert.Containsf(t, info.Reason, "sleeper", "failure %+v", info)
	})
}
