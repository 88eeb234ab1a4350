//go:build unix

package dirstore

import (
	"os"
	"syscall"
)

// lockFlags are the open flags of a lock file: never through a symlink.
func lockFlags(create bool) int {
	f := os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	if create {
		f |= os.O_CREATE
	}
	return f
}

// noFollow is the open flag that refuses a symlink as the last component.
const noFollow = syscall.O_NOFOLLOW
