package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDotIsNotAnID checks that "." is refused: as an operation id its
// archive would be backup/ itself.
func TestDotIsNotAnID(t *testing.T) {
	for kind, check := range map[string]func(string) error{
		"operation": CheckOperationID, "call": CheckCallID, "participant": CheckParticipantID,
	} {
		var ie *IDError
		err := check(".")
		assert.ErrorIs(t, err, ErrInvalidID, kind)
		assert.True(t, errors.As(err, &ie) && ie.Kind == kind, "%s: %v", kind, err)
	}
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	err := s.Create(context.Background(), newData("."), nil)
	require.ErrorIs(t, err, ErrInvalidID)
	assert.Empty(t, files(t, dir), "files created for the id \".\"")
}

// storeNames returns every name the store gives the files of operation id,
// relative to the store directory, built by the functions the store uses.
func storeNames(s *Store, id string) []string {
	live, _ := filepath.Rel(s.dir, s.liveDir(id))
	names := []string{
		stateName(id), lockName(id), logName(id), debugLogName(id),
		trailName(id), trailName(id) + "/" + snapshotName(1234, id), live,
		backupDirName(id),
	}
	for _, n := range []string{archivedState, archivedLog, archivedDebugLog, archivedTrail} {
		names = append(names, backupDirName(id)+"/"+n)
	}
	return names
}

// checkNames fails unless every name of every id in ids is a clean local
// path, no name of one id is a name of another or of the store itself
// ("backup"), and none lies in a directory of another id.
func checkNames(t *testing.T, s *Store, ids []string) {
	t.Helper()
	owner := map[string]string{backupName: "the store"}
	for _, id := range ids {
		tmp := tempName(stateName(id))
		if !isTempName(tmp) {
			t.Errorf("id %q: the temp name %q is not taken for one", id, tmp)
		}
		for _, n := range storeNames(s, id) {
			if isTempName(filepath.Base(n)) {
				t.Errorf("id %q: name %q is taken for a temp name", id, n)
			}
		}
		for _, n := range append(storeNames(s, id), tmp) {
			if !filepath.IsLocal(n) || filepath.Clean(n) != n {
				t.Errorf("id %q: name %q is not a clean path inside the directory", id, n)
			}
			if o, ok := owner[n]; ok && o != id {
				t.Errorf("name %q belongs to %q and to %q", n, o, id)
			}
			owner[n] = id
		}
	}
	for n, id := range owner {
		for dir := filepath.Dir(n); dir != "."; dir = filepath.Dir(dir) {
			if o, ok := owner[dir]; ok && o != id && o != "the store" {
				t.Errorf("name %q of %q lies in %q of %q", n, id, dir, o)
			}
		}
	}
}

// namePieces are the parts the ids of TestStoreNamesNeverCollide are made
// of: the store's own suffixes and their parts, so that every way one
// id's name could be another's is tried.
var namePieces = []string{
	"a", "B", "0", ".", "-", "_", ":", "backup", "operation", ".operation", ".json", ".lock",
	".log", ".debug", "_trail", "trail", ".live", "live", "tmp", "~tmp-", "/",
}

// TestStoreNamesNeverCollide checks the names of every valid id made of up
// to three namePieces: no two operations share a name.
func TestStoreNamesNeverCollide(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	var ids []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if CheckOperationID(prefix) == nil {
			ids = append(ids, prefix)
		}
		if depth == 0 {
			return
		}
		for _, p := range namePieces {
			gen(prefix+p, depth-1)
		}
	}
	gen("", 3)
	require.Greater(t, len(ids), 5000)
	checkNames(t, s, ids)
}

// FuzzStoreNames checks pairs of ids: two valid ids never share a name.
func FuzzStoreNames(f *testing.F) {
	for _, a := range namePieces {
		f.Add(a, a+".operation")
		f.Add(a+".operation.json", a)
	}
	f.Add("x", "x.operation.json")
	s := openStore(f, f.TempDir(), Options{})
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b || CheckOperationID(a) != nil || CheckOperationID(b) != nil {
			return
		}
		checkNames(t, s, []string{a, b})
	})
}
