package dirstore

import "sync/atomic"

// writeFault, when set, is asked before every append to a journal; an
// error it returns fails that append as a failing disk would. It is a
// test seam: tests set it through SetWriteFault to make a change fail
// without a full disk.
var writeFault atomic.Pointer[func(path string) error]

// SetWriteFault makes every later append to a journal first call f with
// the journal's path and fail with f's error, if any; SetWriteFault(nil)
// removes it. It is a test seam: f sees the appends of every Dir in the
// process, so a test filters by path.
func SetWriteFault(f func(path string) error) {
	if f == nil {
		writeFault.Store(nil)
		return
	}
	writeFault.Store(&f)
}

// injectedWriteFault returns the error of the write fault for path, if any.
func injectedWriteFault(path string) error {
	if f := writeFault.Load(); f != nil {
		return (*f)(path)
	}
	return nil
}

// renameFault is writeFault's twin for the renames that put a file
// written through a temp in place (see SetRenameFault).
var renameFault atomic.Pointer[func(tmp string) error]

// SetRenameFault makes every later rename of a temp file into place first
// call f with the temp's name in the directory and fail with f's error,
// if any; SetRenameFault(nil) removes it. It is a test seam, for every
// Dir in the process, like SetWriteFault.
func SetRenameFault(f func(tmp string) error) {
	if f == nil {
		renameFault.Store(nil)
		return
	}
	renameFault.Store(&f)
}

// injectedRenameFault returns the error of the rename fault for tmp, if
// any.
func injectedRenameFault(tmp string) error {
	if f := renameFault.Load(); f != nil {
		return (*f)(tmp)
	}
	return nil
}
