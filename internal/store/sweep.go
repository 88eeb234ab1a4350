package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// staleTempAge is the age past which a temp file is taken for one left
// by a writer killed between create and rename (live writers finish in
// far less), and a lock file without a state for one left by an older
// version (an operation being created has a fresh one).
const staleTempAge = time.Minute

// sweepDir removes what killed writers and older versions left in the
// store directory: temp files of the store's own form (isTempName) and
// lock files of operations without a live state, older than staleTempAge.
// It reads the directory once, in batches, and looks at nothing below it:
// the cost follows the live operations. Only regular files are removed;
// a name that is a symbolic link, a directory or anything else is left
// alone.
func (s *Store) sweepDir() {
	f, err := os.Open(s.dir)
	if err != nil {
		return
	}
	defer f.Close()
	live := map[string]bool{} // ids with a state file
	var locks []string        // ids with a lock file
	for {
		ents, err := f.ReadDir(1024)
		for _, de := range ents {
			name, regular := de.Name(), de.Type().IsRegular()
			if id, ok := strings.CutSuffix(name, ".operation.json"); ok {
				live[id] = true
			} else if id, ok := strings.CutSuffix(name, ".operation.json.lock"); ok && regular && CheckOperationID(id) == nil {
				locks = append(locks, id)
			} else if regular && isTempName(name) {
				s.removeStaleTemp(name)
			}
		}
		if err != nil {
			break
		}
	}
	for _, id := range locks {
		if !live[id] {
			s.removeLeftoverLock(id)
		}
	}
}

// removeStaleTemp removes the temp file name if it is a regular file
// older than staleTempAge. unlink never follows a symbolic link: if the
// name was replaced by one since, the link goes, not what it points to.
func (s *Store) removeStaleTemp(name string) {
	path := filepath.Join(s.dir, name)
	if stale(path) {
		unix.Unlink(path)
	}
}

// removeLeftoverLock removes the lock file of id, older than
// staleTempAge, if id has no live state, under its lock as every removal
// of a lock file (see lock.go). A lock that is taken is left: its holder
// is busy with the operation.
func (s *Store) removeLeftoverLock(id string) {
	path := s.lockPath(id)
	if !stale(path) {
		return
	}
	h, ok, _ := tryFlock(path, false)
	if !ok {
		return
	}
	defer h.release()
	if same, _ := lockedAt(&h, path); !same {
		return
	}
	if _, err := os.Lstat(s.StatePath(id)); errors.Is(err, fs.ErrNotExist) {
		unix.Unlink(path)
	}
}

// stale reports whether path is a regular file older than staleTempAge.
func stale(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTempAge
}
