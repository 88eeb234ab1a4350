package ledger_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/proclocks"
)

func init() { roles["lock-holder"] = runLockHolder }

// runLockHolder takes the flock of $LOCK_FILE, says "locked" and holds it
// until its standard input closes.
func runLockHolder() {
	f, err := os.OpenFile(os.Getenv("LOCK_FILE"), os.O_RDWR, 0)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lock-holder:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}

// holdLock starts a process that holds the flock of path; release lets it
// go and waits for the process to end.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := child(t, "lock-holder", "LOCK_FILE="+path)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	done := false
	release = func() {
		if !done {
			done = true
			stdin.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)
	return release
}

// flocks returns the flocks that process pid holds (held) and waits for
// (blocked) on the file at path; none if the file is gone.
func flocks(t *testing.T, pid int, path string) (held, blocked int) {
	t.Helper()
	locks, err := proclocks.Of(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0
	}
	require.NoError(t, err)
	for _, l := range locks {
		switch {
		case l.PID != pid:
		case l.Blocked:
			blocked++
		default:
			held++
		}
	}
	return held, blocked
}

// TestAbandonedLockWaitQueuesAndGivesBack: while another process holds
// an operation's lock, a change with a short deadline fails with
// ErrLockTimeout, but its wait stays queued in the kernel; Close does not
// wait for it forever; and once the holder lets go, the abandoned wait
// takes the lock and gives it straight back, so others get it.
func TestAbandonedLockWaitQueuesAndGivesBack(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func(participant string) *ledger.LocalLedger {
		l, err := ledger.NewLocalLedger(ledger.Options{
			BasePath: dir, ParticipantID: participant, NoSignalHandler: true,
			HeartbeatInterval: time.Hour, StaleThreshold: 3 * time.Hour,
		})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		return l
	}
	alice := open("alice")
	op, err := alice.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	lock := filepath.Join(dir, op.ID()+".operation.lock")
	release := holdLock(t, lock)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = ledger.StartCall[int](short, op, ledger.CallOptions[int]{})
	require.ErrorIs(t, err, ledger.ErrLockTimeout)
	waitFor(t, 10*time.Second, "the abandoned wait queued in the kernel", func() bool {
		_, blocked := flocks(t, os.Getpid(), lock)
		return blocked == 1
	})

	// A ledger whose only lock wait was abandoned closes all the same.
	carol := open("carol")
	short2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	_, err = carol.JoinOperation(short2, op.ID(), ledger.JoinOptions{})
	require.ErrorIs(t, err, ledger.ErrLockTimeout)
	closed := make(chan struct{})
	go func() { carol.Close(); close(closed) }()
	waitClosed(t, closed, 20*time.Second, "Close with an abandoned lock wait")

	release()
	waitFor(t, 10*time.Second, "the lock free again", func() bool {
		held, blocked := flocks(t, os.Getpid(), lock)
		return held == 0 && blocked == 0
	})
	f, err := os.OpenFile(lock, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	assert.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), "the lock is still held")
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err)
	require.NoError(t, call.End(ctx, 1))
}
