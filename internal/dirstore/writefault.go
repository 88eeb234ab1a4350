package dirstore

import "sync/atomic"

// fault is a test seam: when set, a function asked before an operation
// on a file, whose error fails the operation as a failing disk would. It
// sees the operations of every Dir in the process, so a test filters by
// name.
type fault struct {
	f atomic.Pointer[func(name string) error]
}

func (x *fault) set(f func(name string) error) {
	if f == nil {
		x.f.Store(nil)
		return
	}
	x.f.Store(&f)
}

// check returns the error of the fault for name, if any.
func (x *fault) check(name string) error {
	if f := x.f.Load(); f != nil {
		return (*f)(name)
	}
	return nil
}

var (
	writeFault  fault // asked with a journal's path before every append to it
	renameFault fault // asked with a temp's name before it is renamed into place
)

// SetWriteFault makes every later append to a journal first call f with
// the journal's path and fail with f's error, if any; SetWriteFault(nil)
// removes it. It is a test seam, for every Dir in the process: tests set
// it to make a change fail without a full disk.
func SetWriteFault(f func(path string) error) { writeFault.set(f) }

// SetRenameFault makes every later rename of a temp file into place first
// call f with the temp's name in the directory and fail with f's error,
// if any; SetRenameFault(nil) removes it. It is a test seam, for every
// Dir in the process, like SetWriteFault.
func SetRenameFault(f func(tmp string) error) { renameFault.set(f) }
