package store

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"strings"
)

// Temp files. A state is written to a temp file next to it and renamed
// over it. A temp file's name is its target's name, tempSep and 16
// lowercase hex digits: {id}.operation.json~tmp-0123456789abcdef. '~' is
// not in the id alphabet, so no file of a valid operation ever has such a
// name, and the start-up sweep (sweep.go) deletes only files that have
// exactly this form.
const tempSep = "~tmp-"

// tempName returns a fresh temp name for target; random, not pid-based,
// because processes in different pid namespaces may share a directory.
func tempName(target string) string {
	const digits = "0123456789abcdef"
	var b [len(tempSep) + 16]byte
	copy(b[:], tempSep)
	r := rand.Uint64()
	for i := len(b) - 1; i >= len(tempSep); i-- {
		b[i] = digits[r&15]
		r >>= 4
	}
	return target + string(b[:])
}

// isTempName reports whether name is a temp name of a state file of a
// valid operation, as tempName makes them.
func isTempName(name string) bool {
	i := strings.LastIndex(name, tempSep)
	if i < 0 || len(name)-i-len(tempSep) != 16 {
		return false
	}
	for _, c := range name[i+len(tempSep):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	id, ok := strings.CutSuffix(name[:i], ".operation.json")
	return ok && CheckOperationID(id) == nil
}

// Symbolic links. The store never follows a symbolic link inside its
// directory to read, create, write or delete (the directory itself may
// be reached through links: its path is the owner's choice).
//
//   - The hot path opens the files of an operation, which lie directly in
//     the directory, with O_NOFOLLOW (sysfile.go, lock.go); a temp file is
//     created with O_EXCL, which follows nothing; rename and unlink act
//     on a link itself. A link met there fails the change with a
//     CorruptError naming it (errSymlink).
//   - Housekeeping (archive, prune, trail, archived reads) works through
//     an os.Root of the directory, so that no name can reach outside it
//     whatever is swapped in meanwhile, and checks with Lstat that no
//     directory it enters is a link (realDir). The archive of an
//     operation fails with errSymlink; pruning removes nothing and
//     returns errSymlink; a trail snapshot is skipped. A link swapped in
//     between the check and the use can only lead inside the directory,
//     whose writers could change it anyway.

// errSymlink is the complaint about a symbolic link met where the store
// expects a file or directory of its own.
var errSymlink = errors.New("is a symbolic link, which the ledger does not follow")

// errNotDir is the complaint about a file where the store expects a
// directory of its own.
var errNotDir = errors.New("is not a directory")

// openRoot opens the store directory for housekeeping.
func (s *Store) openRoot() (*os.Root, error) { return os.OpenRoot(s.dir) }

// realDir returns nil if name (slash-separated, relative to r) and every
// directory on the way to it are directories and none is a symbolic
// link. A missing one is an error that matches fs.ErrNotExist; a link or
// a file is a CorruptError naming it.
func (s *Store) realDir(r *os.Root, name string) error {
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		if err := s.isDir(r, name[:i]); err != nil {
			return err
		}
	}
	return nil
}

// isDir checks one name with Lstat, as realDir does.
func (s *Store) isDir(r *os.Root, name string) error {
	fi, err := r.Lstat(name)
	switch {
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return &CorruptError{Path: s.path(name), Err: errSymlink}
	case !fi.IsDir():
		return &CorruptError{Path: s.path(name), Err: errNotDir}
	}
	return nil
}

// mkdirs creates the directory name and those on the way to it that are
// missing, as realDir checks them.
func (s *Store) mkdirs(r *os.Root, name string) error {
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		err := s.isDir(r, name[:i])
		if errors.Is(err, fs.ErrNotExist) {
			if err = r.Mkdir(name[:i], 0o755); errors.Is(err, fs.ErrExist) {
				err = s.isDir(r, name[:i]) // made by another process meanwhile
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readRegular reads the regular file name (relative to r) whose directory
// realDir accepts; a link is a CorruptError.
func (s *Store) readRegular(r *os.Root, name string) ([]byte, error) {
	if err := s.realDir(r, path.Dir(name)); err != nil {
		return nil, err
	}
	fi, err := r.Lstat(name)
	switch {
	case err != nil:
		return nil, err
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, &CorruptError{Path: s.path(name), Err: errSymlink}
	}
	return r.ReadFile(name)
}

// names returns the names in the directory name (relative to r), which
// realDir accepts, in no particular order.
func (s *Store) names(r *os.Root, name string) ([]string, error) {
	if err := s.realDir(r, name); err != nil {
		return nil, err
	}
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
