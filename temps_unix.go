//go:build unix

package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// errSymlinkBelowRoot is why removeBelow refuses a path: a directory on
// the way from its temp root to it is a symbolic link (or not a directory).
var errSymlinkBelowRoot = errors.New("a directory below the temp root is a symbolic link or not a directory")

// removeBelow deletes path, a file or a directory with everything in it,
// which must lie below root, without following a symbolic link anywhere
// below root: every directory on the way is opened relative to the one
// before it with O_NOFOLLOW, and the tree is removed through descriptors,
// so a link swapped in meanwhile is not followed either. A link at path is
// removed itself. With owner >= 0, path must belong to that user (its own
// owner, not its target's). Links in root itself are followed: the roots
// are the program's own configuration. A path that does not exist is no
// error.
func removeBelow(root, path string, owner int) error {
	rel, ok := below(root, path)
	if !ok {
		return fmt.Errorf("ledger: temp resource %s is not below %s", path, root)
	}
	parts := strings.Split(rel, string(filepath.Separator))
	dir, err := openDirAt(unix.AT_FDCWD, root, 0)
	if err != nil {
		return gone(err, "open", root)
	}
	at := root
	for _, name := range parts[:len(parts)-1] {
		next, err := openDirAt(dir, name, unix.O_NOFOLLOW)
		unix.Close(dir)
		at = filepath.Join(at, name)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return &fs.PathError{Op: "remove", Path: path, Err: fmt.Errorf("%s: %w", at, errSymlinkBelowRoot)}
		}
		if err != nil {
			return gone(err, "open", at)
		}
		dir = next
	}
	defer unix.Close(dir)
	name := parts[len(parts)-1]
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return gone(err, "lstat", path)
	}
	if owner >= 0 && int(st.Uid) != owner {
		return &fs.PathError{Op: "remove", Path: path, Err: fmt.Errorf("owned by uid %d, not %d", st.Uid, owner)}
	}
	return removeAt(dir, name, path, st.Mode&unix.S_IFMT == unix.S_IFDIR)
}

// gone returns nil for no error or one that says the file does not exist,
// and the error as an *fs.PathError otherwise.
func gone(err error, op, path string) error {
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// openDirAt opens the directory name in dir, retrying on EINTR.
func openDirAt(dir int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// removeAt removes name in the directory dir (path, for messages): a
// directory with everything in it, through descriptors, never following a
// link; anything else, a link included, by unlinking it.
func removeAt(dir int, name, path string, isDir bool) error {
	if !isDir {
		return gone(unix.Unlinkat(dir, name, 0), "remove", path)
	}
	// Entries created while the directory is emptied make the last step
	// fail with ENOTEMPTY: empty it again, a few times.
	for range 3 {
		fd, err := openDirAt(dir, name, unix.O_NOFOLLOW)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// No longer a directory: remove what is there instead.
			return gone(unix.Unlinkat(dir, name, 0), "remove", path)
		}
		if err != nil {
			return gone(err, "open", path)
		}
		err = removeContents(fd, path)
		if err != nil {
			return err
		}
		err = unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
		if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return gone(err, "remove", path)
		}
	}
	return &fs.PathError{Op: "remove", Path: path, Err: unix.ENOTEMPTY}
}

// removeContents removes everything in the directory fd (path, for
// messages) and closes fd.
func removeContents(fd int, path string) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	dir := int(f.Fd())
	var errs []error
	for _, name := range names {
		var st unix.Stat_t
		p := filepath.Join(path, name)
		if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, gone(err, "lstat", p))
			continue
		}
		errs = append(errs, removeAt(dir, name, p, st.Mode&unix.S_IFMT == unix.S_IFDIR))
	}
	return errors.Join(errs...)
}
