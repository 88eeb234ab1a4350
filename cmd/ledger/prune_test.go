package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPruneDoesNotFollowBackupLink: with backup/ a link to a foreign
// directory whose subdirectories pass the id check, `ledger prune`
// refuses and deletes nothing there.
func TestPruneDoesNotFollowBackupLink(t *testing.T) {
	dir, foreign := t.TempDir(), t.TempDir()
	canary := filepath.Join(foreign, "op1", "canary")
	require.NoError(t, os.MkdirAll(filepath.Dir(canary), 0o755))
	require.NoError(t, os.WriteFile(canary, []byte("canary"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(foreign, "op1", "operation.json"), []byte(`{"operationId": "op1"}`), 0o644))
	require.NoError(t, os.Symlink(foreign, filepath.Join(dir, "backup")))

	code, _, stderr := runCmd(t, "prune", "--dir", dir, "--keep", "0")
	assert.Equal(t, exitError, code)
	assert.Contains(t, stderr, "symbolic link", "stderr")
	b, err := os.ReadFile(canary)
	require.NoError(t, err, "the foreign directory was pruned")
	assert.Equal(t, "canary", string(b))
}
