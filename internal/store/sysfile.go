package store

import (
	"errors"
	"io"
	"io/fs"

	"golang.org/x/sys/unix"
)

// The hot path of a change opens three files (state, temp, log). os.File
// registers every descriptor with the runtime poller, which costs an
// epoll_ctl and an fcntl per open: a third of the system calls of a small
// change. Regular files gain nothing from the poller, so the hot path uses
// plain descriptors through these helpers. Errors are *fs.PathError, as
// from package os.

// sysOpen opens path, retrying on EINTR. With O_NOFOLLOW, a symbolic
// link at path is a CorruptError (see safefs.go).
func sysOpen(op, path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, mode)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.ELOOP && flags&unix.O_NOFOLLOW != 0:
			return -1, &CorruptError{Path: path, Err: errSymlink}
		case err != unix.EINTR:
			return -1, &fs.PathError{Op: op, Path: path, Err: err}
		}
	}
}

// sysReadFile reads the whole file at path (not through a link) into a buffer from buf, which
// is handed the file's size and returns a slice of that length.
func sysReadFile(path string, buf func(size int) []byte) ([]byte, error) {
	fd, err := sysOpen("open", path, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	b := buf(int(st.Size))
	for n := 0; n < len(b); {
		m, err := unix.Read(fd, b[n:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		case m == 0:
			// Files are replaced, never truncated: this cannot happen
			// unless someone edits ledger files in place.
			return nil, &fs.PathError{Op: "read", Path: path, Err: io.ErrUnexpectedEOF}
		}
		n += m
	}
	return b, nil
}

// sysWrite writes all of b to fd.
func sysWrite(path string, fd int, b []byte) error {
	for len(b) > 0 {
		m, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "write", Path: path, Err: err}
		}
		b = b[m:]
	}
	return nil
}

// sysAppend appends b to the file at path (not through a link) with one
// O_APPEND write, creating the file if needed.
func sysAppend(path string, b []byte) error {
	fd, err := sysOpen("open", path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	err = sysWrite(path, fd, b)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = &fs.PathError{Op: "close", Path: path, Err: cerr}
	}
	return err
}
