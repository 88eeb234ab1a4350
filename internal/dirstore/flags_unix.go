//go:build unix

package dirstore

import (
	"os"
	"syscall"
)

// lockFlags are the open flags of a lock file: never through a symlink,
// never blocking on a FIFO put in its place (a blocking flock still
// waits).
func lockFlags(create bool) int {
	f := os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_CLOEXEC | syscall.O_NONBLOCK
	if create {
		f |= os.O_CREATE
	}
	return f
}

// noFollow is the open flag that refuses a symlink as the last component.
const noFollow = syscall.O_NOFOLLOW
