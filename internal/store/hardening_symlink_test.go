package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// foreign is a directory outside the ledger directory that a symbolic
// link inside it points at: it holds a canary file, and look reads all of
// it so that a test can check that nothing in it changed.
type foreign struct {
	dir    string
	canary string
	before map[string]string
}

func newForeign(t *testing.T) *foreign {
	t.Helper()
	f := &foreign{dir: t.TempDir()}
	f.canary = filepath.Join(f.dir, "canary")
	require.NoError(t, os.WriteFile(f.canary, []byte("canary"), 0o644))
	return f
}

// add creates a file in the foreign directory.
func (f *foreign) add(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(f.dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

// look returns every path under the foreign directory with its content
// ("dir" for directories).
func (f *foreign) look(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	require.NoError(t, filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			m[p] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	}))
	return m
}

func (f *foreign) freeze(t *testing.T) { f.before = f.look(t) }

// unchanged checks that nothing in the foreign directory was deleted,
// created or changed since freeze.
func (f *foreign) unchanged(t *testing.T) {
	t.Helper()
	assert.Equal(t, f.before, f.look(t), "the directory outside the ledger changed")
	b, err := os.ReadFile(f.canary)
	if assert.NoError(t, err, "canary") {
		assert.Equal(t, "canary", string(b))
	}
}

func link(t *testing.T, target, name string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(name), 0o755))
	require.NoError(t, os.Symlink(target, name))
}

// isSymlinkError checks that err is the CorruptError of a symbolic link.
func isSymlinkError(t *testing.T, err error, what string) {
	t.Helper()
	var ce *CorruptError
	if assert.ErrorIs(t, err, ErrCorrupt, what) && assert.True(t, errors.As(err, &ce), what) {
		assert.ErrorIs(t, ce, errSymlink, what)
	}
}

// TestSymlinkedTrailNotFollowed: a trail directory that is a link to a
// foreign directory gets no snapshots and loses no files; the operation
// goes on.
func TestSymlinkedTrailNotFollowed(t *testing.T) {
	dir, f := t.TempDir(), newForeign(t)
	f.add(t, "000000000001_op1.json", "old snapshot look-alike")
	s := openStore(t, dir, Options{MaxTrail: 1, TrailInterval: time.Nanosecond, MaxBackups: 1})
	create(t, s, "op1")
	require.NoError(t, os.RemoveAll(s.trailDir("op1")))
	link(t, f.dir, s.trailDir("op1"))
	f.freeze(t)
	for i := range 3 {
		_, err := s.Update(context.Background(), "op1", setDescription(string(rune('a'+i))))
		require.NoError(t, err)
	}
	f.unchanged(t)
	_, err := s.Update(context.Background(), "op1", complete)
	require.NoError(t, err)
	assert.Equal(t, 0, s.TrailLen("op1"), "the trail of the archive was counted through the link")
	create(t, s, "op2")
	_, err = s.Update(context.Background(), "op2", complete) // prunes op1's archive
	require.NoError(t, err)
	f.unchanged(t)
}

// TestSymlinkedBackupNotFollowed: with backup/ a link to a foreign
// directory whose subdirectories pass the id check (one even holds a
// matching operation.json), archiving is refused and pruning deletes
// nothing.
func TestSymlinkedBackupNotFollowed(t *testing.T) {
	dir, f := t.TempDir(), newForeign(t)
	f.add(t, "a/data", "a's data")
	f.add(t, "b/operation.json", `{"operationId": "b"}`)
	s := openStore(t, dir, Options{MaxBackups: 1})
	link(t, f.dir, filepath.Join(dir, backupName))
	f.freeze(t)
	create(t, s, "op1")
	_, err := s.Update(context.Background(), "op1", complete)
	isSymlinkError(t, err, "archive into a linked backup/")
	isSymlinkError(t, s.Prune(), "Prune")
	_, _, err = s.PruneArchives(0)
	isSymlinkError(t, err, "PruneArchives(0)")
	_, err = s.ListArchived()
	isSymlinkError(t, err, "ListArchived")
	f.unchanged(t)
}

// TestSymlinkedArchiveNotFollowed: backup/{id} a link to a foreign
// directory; archiving id is refused and moves nothing there, and pruning
// does not take the link for an archive.
func TestSymlinkedArchiveNotFollowed(t *testing.T) {
	dir, f := t.TempDir(), newForeign(t)
	f.add(t, "operation.json", `{"operationId": "op1"}`)
	s := openStore(t, dir, Options{MaxBackups: 1})
	create(t, s, "op1")
	link(t, f.dir, s.BackupDir("op1"))
	f.freeze(t)
	_, err := s.Update(context.Background(), "op1", complete)
	isSymlinkError(t, err, "archive into a linked backup/op1")
	_, err = os.Lstat(s.StatePath("op1"))
	assert.NoError(t, err, "the state left the ledger directory")
	ids, err := s.ListArchived()
	require.NoError(t, err)
	assert.Empty(t, ids)
	removed, _, err := s.PruneArchives(0)
	require.NoError(t, err)
	assert.Zero(t, removed)
	f.unchanged(t)
}

// TestPruneRecognisesArchivesByContent: only a directory whose
// operation.json names it is an archive; other directories in backup/
// are never pruned.
func TestPruneRecognisesArchivesByContent(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	notes := filepath.Join(dir, backupName, "notes")
	other := filepath.Join(dir, backupName, "other")
	require.NoError(t, os.MkdirAll(notes, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(notes, "todo"), []byte("x"), 0o644))
	require.NoError(t, os.MkdirAll(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, archivedState), []byte(`{"operationId": "op1"}`), 0o644))
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{notes, other} {
		require.NoError(t, os.Chtimes(p, old, old))
	}
	for _, id := range []string{"op1", "op2"} {
		create(t, s, id)
		_, err := s.Update(context.Background(), id, complete)
		require.NoError(t, err)
	}
	ids, err := s.ListArchived()
	require.NoError(t, err)
	assert.Equal(t, []string{"op1", "op2"}, ids)
	removed, kept, err := s.PruneArchives(1)
	require.NoError(t, err)
	assert.Equal(t, 1, removed)
	assert.Equal(t, 1, kept)
	for _, p := range []string{filepath.Join(notes, "todo"), filepath.Join(other, archivedState), s.BackupDir("op2")} {
		_, err := os.Lstat(p)
		assert.NoError(t, err, "%s pruned", p)
	}
}

// TestSymlinkedFilesNotFollowed: the state, lock and log files of an
// operation, as links to foreign files (existing or dangling), are never
// written through: the change fails with the link named.
func TestSymlinkedFilesNotFollowed(t *testing.T) {
	lock := func(s *Store) string { return s.lockPath("op1") }
	log := func(s *Store) string { return s.logPath("op1") }
	debug := func(s *Store) string { return s.debugLogPath("op1") }
	for _, c := range []struct {
		name     string
		file     func(s *Store) string // the file made a link
		dangling bool                  // the link points at nothing
		exists   bool                  // op1 is created before the link is made
		act      func(s *Store) error
	}{
		{"dangling lock", lock, true, false, createOp},
		{"lock", lock, false, false, createOp},
		{"lock of a live operation", lock, false, true, update},
		{"dangling log", log, true, true, infoLog},
		{"log", log, false, true, infoLog},
		{"dangling debug log", debug, true, true, debugLog},
		{"debug log", debug, false, true, debugLog},
		{"state", func(s *Store) string { return s.StatePath("op1") }, false, true, update},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, f := t.TempDir(), newForeign(t)
			s := openStore(t, dir, Options{})
			if c.exists {
				create(t, s, "op1")
				if err := os.Remove(c.file(s)); err != nil {
					require.ErrorIs(t, err, fs.ErrNotExist)
				}
			}
			target := f.canary
			switch {
			case c.dangling:
				target = filepath.Join(f.dir, "created")
			case c.name == "state":
				f.add(t, "state", string(Encode(newData("op1"))))
				target = filepath.Join(f.dir, "state")
			}
			link(t, target, c.file(s))
			f.freeze(t)
			// As another process would meet it.
			isSymlinkError(t, c.act(openStore(t, dir, Options{})), c.name)
			f.unchanged(t)
		})
	}
}

func createOp(s *Store) error {
	return s.Create(context.Background(), newData("op1"), func(tx *Tx) { tx.Log("INFO", "alice", "OPERATION_CREATED") })
}

func infoLog(s *Store) error { return s.Log(context.Background(), "op1", "INFO", "alice", "x") }

func debugLog(s *Store) error { return s.Log(context.Background(), "op1", "DEBUG", "alice", "x") }

func update(s *Store) error {
	_, err := s.Update(context.Background(), "op1", setDescription("x"))
	return err
}

// TestSymlinkedLiveDirNotFollowedOnArchive: archiving removes the
// liveness directory of an operation; as a link, the link goes, not what
// it points to.
func TestSymlinkedLiveDirNotFollowedOnArchive(t *testing.T) {
	dir, f := t.TempDir(), newForeign(t)
	s := openStore(t, dir, Options{})
	create(t, s, "op1")
	link(t, f.dir, s.liveDir("op1"))
	f.freeze(t)
	_, err := s.Update(context.Background(), "op1", complete)
	require.NoError(t, err)
	f.unchanged(t)
}
