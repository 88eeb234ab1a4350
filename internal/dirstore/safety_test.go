package dirstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// storeNames are the names the store gives the files of operation id.
func storeNames(id string) []string {
	return []string{
		id + ".operation.journal", id + ".operation.json", id + ".operation.log",
		id + ".operation.debug.log", id + ".operation.lock", id + "_trail", id + ".live",
		"backup/" + id,
	}
}

// TestStoreNamesNeverCollide: no name of one operation is a name of
// another, for ids made of the store's own suffixes, and no valid id is a
// temp name.
func TestStoreNamesNeverCollide(t *testing.T) {
	parts := []string{"a", ".operation", ".json", ".journal", ".log", ".debug", ".lock", "_trail", ".live", "backup", ".", "-", ":", "~ledger-1.tmp"}
	var ids []string
	for _, p := range parts {
		for _, q := range parts {
			for _, r := range []string{"", "a", ".log"} {
				ids = append(ids, p+q+r)
			}
		}
	}
	d := open(t, t.TempDir(), dirstore.Options{})
	defer d.Close()
	owner := map[string]string{}
	valid := 0
	for _, id := range ids {
		// An id the store refuses has no files.
		if _, err := d.Read(context.Background(), id, 0); err != nil && !strings.Contains(err.Error(), "not found") {
			continue
		}
		valid++
		assert.False(t, strings.HasPrefix(id, "~ledger-"), "id %q has the temp form", id)
		for _, n := range storeNames(id) {
			if o, taken := owner[n]; taken {
				assert.Equalf(t, o, id, "%q is a name of %q and of %q", n, o, id)
			}
			owner[n] = id
		}
	}
	require.Greater(t, valid, 100)
}

// TestSymlinksNotFollowed puts symlinks, pointing at a directory outside
// the store that holds a canary, where the store keeps its files: the
// store writes and deletes nothing outside its directory.
func TestSymlinksNotFollowed(t *testing.T) {
	const id = "20261201T00:00:00.000-linked-00000001"
	ctx := context.Background()
	for _, name := range []string{
		id + "_trail", "backup", id + ".live", id + ".operation.lock",
		id + ".operation.log", id + ".operation.json", id + ".operation.journal",
	} {
		t.Run(name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			canary := filepath.Join(outside, "canary")
			require.NoError(t, os.WriteFile(canary, []byte("x"), 0o644))
			target := outside
			if !strings.HasSuffix(name, "_trail") && name != "backup" && !strings.HasSuffix(name, ".live") {
				target = canary
			}
			require.NoError(t, os.Symlink(target, filepath.Join(dir, name)))
			d := open(t, dir, dirstore.Options{MaxTrail: 1, MaxBackups: 1})
			defer d.Close()

			// Create, change, compact, hold a lease, archive: whatever
			// fails, nothing outside may change.
			if _, err := d.Create(ctx, id, journal.Change{Records: []journal.Record{{Body: []byte(`{}`), Log: []journal.LogLine{{Level: "INFO", Participant: "p", Message: "m"}}}}, Snapshot: []byte(`{}`)}); err == nil {
				d.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) {
					return journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}, Snapshot: []byte(`{"s":1}`)}, nil
				})
				if l, err := d.Hold(ctx, id, journal.Member{ID: "p", PID: 1, TTL: time.Minute}); err == nil {
					l.Release()
				}
				d.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) {
					return journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}, Snapshot: []byte(`{"s":2}`), Archive: true}, nil
				})
			}
			ents, err := os.ReadDir(outside)
			require.NoError(t, err)
			require.Len(t, ents, 1, "something was written outside the store")
			b, err := os.ReadFile(canary)
			require.NoError(t, err)
			assert.Equal(t, "x", string(b), "the canary outside was changed")
			fi, err := os.Lstat(filepath.Join(dir, name))
			if err == nil && fi.Mode()&os.ModeSymlink == 0 {
				// The store may replace a link at its own file's name by
				// the file (a rename does not follow links); what the
				// link pointed at is untouched, checked above.
				assert.True(t, strings.HasPrefix(name, id+".operation.j"), "%s was replaced", name)
			}
		})
	}
}

// TestPruneRecognisesArchivesByContent: a directory in backup/ is pruned
// only if it holds an archive of the operation it is named for.
func TestPruneRecognisesArchivesByContent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	foreign := filepath.Join(dir, "backup", "20261201T00:00:00.000-foreign-00000001")
	require.NoError(t, os.MkdirAll(foreign, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(foreign, "keep"), []byte("x"), 0o644))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(foreign, old, old))

	d := open(t, dir, dirstore.Options{MaxBackups: 1})
	defer d.Close()
	for i := range 3 {
		id := "20261201T00:00:00.000-p-0000000" + string(rune('a'+i))
		_, err := d.Create(ctx, id, journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}})
		require.NoError(t, err)
		_, err = d.Update(ctx, id, 1, func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}, Snapshot: []byte(`{}`), Archive: true}, nil
		})
		require.NoError(t, err)
	}
	archived, err := d.List(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, []string{"20261201T00:00:00.000-p-0000000c"}, archived, "MaxBackups 1 keeps the newest archive")
	_, err = os.Stat(filepath.Join(foreign, "keep"))
	assert.NoError(t, err, "a directory that holds no archive was pruned")
}

// TestOpenSweepsStaleTemps: opening a directory deletes the temp files a
// killed writer left, in the directory and in its temp directory, once
// they are a minute old; a younger one may be a write in progress, and a
// name of another form is not the store's.
func TestOpenSweepsStaleTemps(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "~ledger-tmp"), 0o755))
	old := time.Now().Add(-2 * time.Minute)
	files := map[string]bool{ // name: swept
		"~ledger-abc1.tmp":             true,
		"~ledger-tmp/~ledger-abc2.tmp": true,
		"~ledger-tmp/~ledger-abc3.tmp": false, // young
		"~ledger-ABC.tmp":              false, // not the temp form
		"~ledger-tmp/notes.txt":        false,
	}
	for name, swept := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		if swept || !strings.HasSuffix(name, "3.tmp") {
			require.NoError(t, os.Chtimes(p, old, old))
		}
	}
	open(t, dir, dirstore.Options{}).Close()
	for name, swept := range files {
		_, err := os.Lstat(filepath.Join(dir, name))
		if swept {
			assert.ErrorIs(t, err, os.ErrNotExist, name)
		} else {
			assert.NoError(t, err, name)
		}
	}
}

// TestTempDirThatFailsIsLeft: when renames out of the temp directory fail
// (another file system mounted on it, say), files are still written,
// through temps beside them, none is left behind, and the temp directory
// is not tried again for every write.
func TestTempDirThatFailsIsLeft(t *testing.T) {
	var tries atomic.Int32
	dirstore.SetRenameFault(func(tmp string) error {
		if strings.HasPrefix(tmp, "~ledger-tmp/") {
			tries.Add(1)
			return errors.New("injected: invalid cross-device link")
		}
		return nil
	})
	t.Cleanup(func() { dirstore.SetRenameFault(nil) })
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	ctx := context.Background()
	rec := []journal.Record{{Time: time.Now(), Body: []byte(`{}`)}}
	_, err := d.Create(ctx, "op", journal.Change{Records: rec, Snapshot: []byte(`{"n":0}`)})
	require.NoError(t, err)
	for n := 1; n <= 3; n++ {
		_, err := d.Update(ctx, "op", 0, func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: rec, Snapshot: []byte(fmt.Sprintf(`{"n":%d}`, n))}, nil
		})
		require.NoError(t, err)
	}
	doc, err := os.ReadFile(filepath.Join(dir, "op.operation.json"))
	require.NoError(t, err)
	assert.Equal(t, `{"n":3}`, string(doc))
	fresh := open(t, dir, dirstore.Options{})
	defer fresh.Close()
	tail, err := fresh.Read(ctx, "op", 0)
	require.NoError(t, err)
	assert.Equal(t, `{"n":3}`, string(tail.Snapshot))
	assert.Equal(t, int32(1), tries.Load(), "renames tried out of the temp directory")
	temps, err := os.ReadDir(filepath.Join(dir, "~ledger-tmp"))
	require.NoError(t, err)
	assert.Empty(t, temps, "temp files left")
}
