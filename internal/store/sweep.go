package store

import (
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// staleTempAge is the age past which a temp file is taken for one left
// by a writer killed between create and rename: live writers finish in
// far less.
const staleTempAge = time.Minute

// sweepDir removes what killed writers left in the store directory: temp
// files of the store's own form (isTempName) older than staleTempAge.
// It reads the directory in batches, keeping no list of it, and looks
// at nothing below it: the cost follows the live operations. Only
// regular files are removed; a name that is a symbolic link, a
// directory or anything else is left alone.
func (s *Store) sweepDir() {
	f, err := os.Open(s.dir)
	if err != nil {
		return
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(1024)
		for _, de := range ents {
			if de.Type().IsRegular() && isTempName(de.Name()) {
				s.removeStaleTemp(de.Name())
			}
		}
		if err != nil {
			return
		}
	}
}

// removeStaleTemp removes the temp file name if it is a regular file
// older than staleTempAge. unlink never follows a symbolic link: if the
// name was replaced by one since, the link goes, not what it points to.
func (s *Store) removeStaleTemp(name string) {
	path := filepath.Join(s.dir, name)
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTempAge {
		unix.Unlink(path)
	}
}
