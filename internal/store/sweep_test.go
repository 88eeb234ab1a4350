package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSweepRemovesOnlyOwnStaleTemps puts aged files next to a stale temp
// file: only regular files of the exact temp form go, never what a
// symbolic link of that form points to.
func TestSweepRemovesOnlyOwnStaleTemps(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	canary := filepath.Join(outside, "canary")
	require.NoError(t, os.WriteFile(canary, []byte("keep"), 0o644))
	stale := tempName("op1.operation.json")
	kept := map[string]func(p string) error{
		"op1.operation.json.tmp-1":                         writeFile, // the old form
		"op1.operation.json~tmp-0123456789ABCDEF":          writeFile, // not lowercase
		"op1.operation.json~tmp-0123456789abcde":           writeFile, // 15 digits
		"..operation.json~tmp-0123456789abcdef":            writeFile, // id ".." is not valid
		"op1.operation.log~tmp-0123456789abcdef":           writeFile, // not a state's
		tempName("dir.operation.json"):                     func(p string) error { return os.Mkdir(p, 0o755) },
		tempName("link.operation.json"):                    func(p string) error { return os.Symlink(canary, p) },
		tempName("fifo.operation.json"):                    func(p string) error { return unix.Mkfifo(p, 0o644) },
		"w.operation.json.tmp-1-0a1b2c3d.operation.json":   writeFile, // a valid operation's state
		"w.operation.json.tmp-1-0a1b2c3d.operation.json~x": writeFile,
	}
	old := time.Now().Add(-2 * staleTempAge)
	aged := unix.NsecToTimespec(old.UnixNano())
	for name, make := range kept {
		p := filepath.Join(dir, name)
		require.NoError(t, make(p), name)
		require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{aged, aged}, unix.AT_SYMLINK_NOFOLLOW), name)
	}
	require.NoError(t, writeFile(filepath.Join(dir, stale)))
	require.NoError(t, os.Chtimes(filepath.Join(dir, stale), old, old))

	openStore(t, dir, Options{})
	_, err := os.Lstat(filepath.Join(dir, stale))
	assert.ErrorIs(t, err, os.ErrNotExist, "stale temp file kept")
	for name := range kept {
		_, err := os.Lstat(filepath.Join(dir, name))
		assert.NoError(t, err, "%s removed", name)
	}
	b, err := os.ReadFile(canary)
	require.NoError(t, err)
	assert.Equal(t, "keep", string(b))
}

func writeFile(p string) error { return os.WriteFile(p, []byte("{"), 0o644) }
