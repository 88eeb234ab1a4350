//go:build unix

package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockFlag is how a lock file is opened: read-write, never through a
// symbolic link (a dangling link must not make the store create a file
// elsewhere), and created only if asked.
func lockFlag(create bool) int {
	flag := os.O_RDWR | unix.O_NOFOLLOW
	if create {
		flag |= os.O_CREATE
	}
	return flag
}
