//go:build unix

package dirstore

import (
	"io/fs"
	"syscall"
)

// nonBlock keeps an open of a FIFO put in a file's place from blocking.
const nonBlock = syscall.O_NONBLOCK

// fileOwner returns the owner and link count of a file.
func fileOwner(fi fs.FileInfo) (uid int, nlink uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), uint64(st.Nlink), true
}
