//go:build windows

package dirstore

import "io/fs"

// nonBlock: Windows has no FIFOs to guard against.
const nonBlock = 0

// fileOwner cannot tell a file's owner as a uid on Windows: temp
// registries are refused, and survivors delete no temp resources of a
// dead process there (each process still deletes its own).
func fileOwner(fi fs.FileInfo) (uid int, nlink uint64, ok bool) { return 0, 0, false }
