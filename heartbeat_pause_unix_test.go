//go:build unix

package ledger_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

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
		if err != nil {
			t.Fatal(err)
		}
		p := startParticipant(t, e, op.ID(), "sleeper", "CALLS=1", "STALE="+stale)

		// Below the threshold: stopped for most of it (the pause itself is
		// what is tested, so this waits for time to pass), it must not be
		// declared crashed.
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP)
		time.Sleep(1200 * time.Millisecond)
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
		beatOf := func() time.Time {
			d, err := op.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, pp := range d.Participants {
				if pp.ParticipantID == "sleeper" {
					return pp.LastHeartbeat
				}
			}
			t.Fatal("no sleeper")
			return time.Time{}
		}
		last := beatOf()
		waitFor(t, 10*time.Second, "the sleeper to beat again", func() bool { return beatOf().After(last) })
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.OperationState != "running" || d.Participants[1].State != "active" {
			t.Fatalf("after a short pause: state %s, sleeper %s", d.OperationState, d.Participants[1].State)
		}

		// Above the threshold: declared crashed, the operation fails.
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP)
		defer syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
		waitClosed(t, op.Failed(), 20*time.Second, "Failed() after a long pause")
		info, _ := op.Failure()
		if !strings.Contains(info.Reason, "sleeper") {
			t.Fatalf("failure %+v", info)
		}
	})
}
