package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockFiles returns the lock files in dir.
func lockFiles(t *testing.T, dir string) []string {
	t.Helper()
	var locks []string
	for _, f := range files(t, dir) {
		if strings.HasSuffix(f, ".lock") && !strings.Contains(f, ".live") {
			locks = append(locks, f)
		}
	}
	return locks
}

// TestLockFilesGoWithTheOperation: archiving an operation removes its lock
// file, and a change that finds no live operation leaves none behind.
func TestLockFilesGoWithTheOperation(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxBackups: 5})
	ctx := context.Background()
	for i := range 20 {
		id := fmt.Sprintf("op%d", i)
		create(t, s, id)
		_, err := s.Update(ctx, id, complete)
		require.NoError(t, err)
	}
	create(t, s, "live")
	assert.Equal(t, []string{lockName("live")}, lockFiles(t, dir))

	// An archived id cannot be created again; trying leaves no lock.
	require.ErrorIs(t, s.Create(ctx, newData("op19"), nil), ErrExists)
	// A lock file left by an older version, of an operation long gone.
	require.NoError(t, os.WriteFile(s.lockPath("gone"), nil, 0o644))
	_, err := s.Update(ctx, "gone", setDescription("x"))
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, os.WriteFile(s.lockPath("gone2"), nil, 0o644))
	require.ErrorIs(t, s.Log(ctx, "gone2", "INFO", "a", "x"), ErrNotFound)
	assert.Equal(t, []string{lockName("live")}, lockFiles(t, dir))

	// The archived operation still reads.
	d, err := s.Read("op19")
	require.NoError(t, err)
	assert.Equal(t, StateCompleted, d.OperationState)
}

// TestOpenRemovesLeftoverLockFiles: lock files without a state, older
// than the sweep age, are what older versions left of archived
// operations; opening removes them, and keeps those of live operations
// and fresh ones (an operation being created).
func TestOpenRemovesLeftoverLockFiles(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	create(t, s, "live")
	for _, id := range []string{"old1", "old2", "fresh"} {
		require.NoError(t, os.WriteFile(s.lockPath(id), nil, 0o644))
	}
	aged := time.Now().Add(-2 * staleTempAge)
	for _, id := range []string{"live", "old1", "old2"} {
		require.NoError(t, os.Chtimes(s.lockPath(id), aged, aged))
	}
	openStore(t, dir, Options{})
	assert.ElementsMatch(t, []string{lockName("live"), lockName("fresh")}, lockFiles(t, dir))
	_, err := s.Update(context.Background(), "live", setDescription("x"))
	assert.NoError(t, err)
}
