package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// procLocks returns how many flocks this process holds and waits for on
// the file now at path, from /proc/locks.
func procLocks(t *testing.T, path string) (held, blocked int) {
	t.Helper()
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0, 0
	}
	b, err := os.ReadFile("/proc/locks")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		waiting := len(f) > 1 && f[1] == "->"
		if waiting {
			f = append(f[:1], f[2:]...)
		}
		if len(f) < 6 || f[1] != "FLOCK" || f[4] != strconv.Itoa(os.Getpid()) ||
			!strings.HasSuffix(f[5], ":"+strconv.FormatUint(st.Ino, 10)) {
			continue
		}
		if waiting {
			blocked++
		} else {
			held++
		}
	}
	return held, blocked
}

// waitUntil waits until cond holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// lockFile opens path (creating it) and takes its flock, as another
// process would.
func lockFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX))
	t.Cleanup(func() { f.Close() })
	return f
}

// TestLockerRetriesOnUnlinkedLockFile: a waiter that gets the flock of a
// lock file that was unlinked while it waited must not take it for the
// operation's lock (another process may hold the new lock file): it
// opens the path again and waits there.
func TestLockerRetriesOnUnlinkedLockFile(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	path := s.lockPath("op1")
	old := lockFile(t, path) // a process about to remove a leftover lock file

	done := make(chan error, 1)
	go func() { done <- s.Create(context.Background(), newData("op1"), nil) }()
	waitUntil(t, 10*time.Second, "Create waiting in the kernel", func() bool {
		_, blocked := procLocks(t, path)
		return blocked == 1
	})

	require.NoError(t, unix.Unlink(path))
	other := lockFile(t, path) // the new lock file of another process's change
	old.Close()
	waitUntil(t, 10*time.Second, "Create waiting on the new lock file", func() bool {
		_, blocked := procLocks(t, path)
		return blocked == 1
	})
	_, err := os.Lstat(s.StatePath("op1"))
	assert.ErrorIs(t, err, os.ErrNotExist, "Create went on under the lock of an unlinked file")
	other.Close()
	require.NoError(t, <-done)
	_, err = os.Lstat(s.StatePath("op1"))
	assert.NoError(t, err)
}

// TestStoreKeepsNoDescriptorPerOperation: a long-lived Store that touched
// many operations keeps no descriptor for each, and its entries within
// entryBudget.
func TestStoreKeepsNoDescriptorPerOperation(t *testing.T) {
	old := entryBudget
	entryBudget = 20 * entryCost(1000) // some 40 small states
	t.Cleanup(func() { entryBudget = old })
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ctx := context.Background()
	before := openFDs(t)
	const n = 300
	for i := range n {
		id := fmt.Sprintf("op%d", i)
		create(t, s, id)
		_, err := s.Update(ctx, id, setDescription("x"))
		require.NoError(t, err)
		_, err = s.Read(id)
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, openFDs(t), before+maxKeptLocks, "descriptors kept open")
	s.mu.Lock()
	assert.LessOrEqual(t, s.cost, entryBudget, "entries kept")
	assert.Less(t, len(s.ops), n/2, "entries kept")
	s.mu.Unlock()
	require.NoError(t, s.Close())
	assert.LessOrEqual(t, openFDs(t), before, "descriptors left open by Close")
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", "self", "fd"))
	require.NoError(t, err)
	return len(ents)
}
