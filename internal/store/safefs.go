package store

import (
	"math/rand/v2"
	"strings"
)

// Temp files. A state is written to a temp file next to it and renamed
// over it. A temp file's name is its target's name, tempSep and 16
// lowercase hex digits: {id}.operation.json~tmp-0123456789abcdef. '~' is
// not in the id alphabet, so no file of a valid operation ever has such a
// name, and the start-up sweep (sweep.go) deletes only files that have
// exactly this form.
const tempSep = "~tmp-"

// tempName returns a fresh temp name for target; random, not pid-based,
// because processes in different pid namespaces may share a directory.
func tempName(target string) string {
	const digits = "0123456789abcdef"
	var b [len(tempSep) + 16]byte
	copy(b[:], tempSep)
	r := rand.Uint64()
	for i := len(b) - 1; i >= len(tempSep); i-- {
		b[i] = digits[r&15]
		r >>= 4
	}
	return target + string(b[:])
}

// isTempName reports whether name is a temp name of a state file of a
// valid operation, as tempName makes them.
func isTempName(name string) bool {
	i := strings.LastIndex(name, tempSep)
	if i < 0 || len(name)-i-len(tempSep) != 16 {
		return false
	}
	for _, c := range name[i+len(tempSep):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	id, ok := strings.CutSuffix(name[:i], ".operation.json")
	return ok && CheckOperationID(id) == nil
}
