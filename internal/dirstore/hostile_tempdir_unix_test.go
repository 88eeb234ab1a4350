//go:build unix

package dirstore_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// TestTempDirTaken: whatever someone puts where the store makes its temp
// files (a file, a FIFO, a symlink to a directory outside), journals and
// state documents are still written, through temps beside them; what is
// there stays as it was, and nothing is written outside the directory.
func TestTempDirTaken(t *testing.T) {
	for name, put := range map[string]func(path, outside string) error{
		"file":    func(path, _ string) error { return os.WriteFile(path, []byte("x"), 0o644) },
		"fifo":    func(path, _ string) error { return syscall.Mkfifo(path, 0o644) },
		"symlink": func(path, outside string) error { return os.Symlink(outside, path) },
	} {
		t.Run(name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			taken := filepath.Join(dir, "~ledger-tmp")
			require.NoError(t, put(taken, outside))
			before, err := os.Lstat(taken)
			require.NoError(t, err)

			d := open(t, dir, dirstore.Options{})
			defer d.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rec := []journal.Record{{Time: time.Now(), Body: []byte(`{}`)}}
			_, err = d.Create(ctx, "op", journal.Change{Records: rec, Snapshot: []byte(`{"n":0}`)})
			require.NoError(t, err)
			_, err = d.Update(ctx, "op", 0, func(journal.Tail) (journal.Change, error) {
				return journal.Change{Records: rec, Snapshot: []byte(`{"n":1}`)}, nil
			})
			require.NoError(t, err)

			fresh := open(t, dir, dirstore.Options{})
			defer fresh.Close()
			tail, err := fresh.Read(ctx, "op", 0)
			require.NoError(t, err)
			require.Equal(t, `{"n":1}`, string(tail.Snapshot), "the compacted journal")
			doc, err := os.ReadFile(filepath.Join(dir, "op.operation.json"))
			require.NoError(t, err)
			require.Equal(t, `{"n":1}`, string(doc), "the state document")

			after, err := os.Lstat(taken)
			require.NoError(t, err)
			require.Equal(t, before.Mode(), after.Mode())
			require.Equal(t, before.Size(), after.Size())
			require.True(t, os.SameFile(before, after))
			ents, err := os.ReadDir(outside)
			require.NoError(t, err)
			require.Empty(t, ents, "written outside the directory")
		})
	}
}

// TestSweepDoesNotFollowTempDirLink: a symlink where the temp directory
// goes is not swept through, as writes do not go through it either.
func TestSweepDoesNotFollowTempDirLink(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.Symlink("sub", filepath.Join(dir, "~ledger-tmp")))
	stale := filepath.Join(dir, "sub", "~ledger-zz.tmp")
	require.NoError(t, os.WriteFile(stale, []byte("x"), 0o644))
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(stale, old, old))
	open(t, dir, dirstore.Options{}).Close()
	_, err := os.Lstat(stale)
	require.NoError(t, err, "a file behind the link was deleted")
}
