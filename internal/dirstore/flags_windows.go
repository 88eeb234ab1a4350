//go:build windows

package dirstore

import "os"

// lockFlags are the open flags of a lock file. Windows has no O_NOFOLLOW;
// the directory's files are opened through os.Root, which refuses links
// that leave it.
func lockFlags(create bool) int {
	f := os.O_RDWR
	if create {
		f |= os.O_CREATE
	}
	return f
}

// noFollow is the open flag that refuses a symlink as the last component;
// none on Windows.
const noFollow = 0
