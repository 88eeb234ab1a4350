package ledger

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"
)

// TestSpawnedCallKill attaches a real child process to a spawned call, the
// way the process workers do, and kills it through Kill.
func TestSpawnedCallKill(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("this test needs sleep(1): %v", err)
	}
	ctx := context.Background()
	l, err := NewLocalLedger(Options{BasePath: t.TempDir(), ParticipantID: "killer"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
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
	if call.Kill(syscall.SIGTERM) {
		t.Fatal("Kill reported success with no process attached")
	}
	close(gate)
	<-attached
	if !call.Kill(syscall.SIGTERM) {
		t.Fatal("Kill of the attached process failed")
	}
	_, err = call.Wait(ctx)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait error %v, want the child's *exec.ExitError", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("child ended with %v, want SIGTERM", ee.ProcessState)
	}
	if call.Kill(syscall.SIGTERM) {
		t.Fatal("Kill reported success after the call ended")
	}
}
