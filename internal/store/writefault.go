package store

import "sync/atomic"

// writeFault, when set, is asked before every write of a state file; an
// error it returns fails that write as a failing disk would. It is a test
// seam: tests set it through SetWriteFault to make a change fail without a
// full disk.
var writeFault atomic.Pointer[func(path string) error]

// SetWriteFault makes every later write of a state file first call f with
// the file's path and fail with f's error, if any; SetWriteFault(nil)
// removes it. It is a test seam, as SetClockSkew is: f sees the writes of
// every Store in the process, so a test filters by path.
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
