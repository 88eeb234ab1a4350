package store

import (
	"fmt"
	"path/filepath"
)

// The names the store gives the files of an operation, relative to the
// store directory. Every path of an operation is built from these, so
// that the id check (CheckOperationID) and the tests that prove no two
// operations share a name look at the same list:
//
//	{id}.operation.json           state
//	{id}.operation.json.lock      flock target, removed with the operation
//	{id}.operation.json~tmp-{hex} a state being written (see tempName)
//	{id}.operation.log            INFO and above
//	{id}.operation.debug.log      DEBUG
//	{id}_trail/                   trail snapshots {elapsed}_{id}.json
//	{id}.live/                    liveness lock files (see files.go)
//	backup/{id}/                  the archive: operation.json,
//	                              operation.log, operation.debug.log, trail/
//
// Every suffix above starts with a byte that the id alphabet has ('.',
// '_'), and none is the end of another, so {a}+x = {b}+y only if a = b
// and x = y. The id "." is refused: backup/. is backup/ itself.

func stateName(id string) string    { return id + ".operation.json" }
func lockName(id string) string     { return stateName(id) + ".lock" }
func logName(id string) string      { return id + ".operation.log" }
func debugLogName(id string) string { return id + ".operation.debug.log" }
func trailName(id string) string    { return id + "_trail" }

// backupName is the directory of archived operations.
const backupName = "backup"

// backupDirName is the archive directory of id.
func backupDirName(id string) string { return backupName + "/" + id }

// The names of the files in an archive directory.
const (
	archivedState    = "operation.json"
	archivedLog      = "operation.log"
	archivedDebugLog = "operation.debug.log"
	archivedTrail    = "trail"
)

// snapshotName is the name of a trail snapshot taken elapsedMS after the
// start of id; the names sort by age.
func snapshotName(elapsedMS int64, id string) string {
	return fmt.Sprintf("%012d_%s.json", max(elapsedMS, 0), id)
}

// path returns the path of a name of the store.
func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }
