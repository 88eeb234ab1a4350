// Package store is the only code that touches ledger files. It keeps the
// Dart layout of a ledger directory:
//
//	{base}/{id}.operation.json        state (JSON, 2-space indent)
//	{base}/{id}.operation.json.lock   flock target, removed with the operation (lock.go)
//	{base}/{id}.operation.log         INFO and above
//	{base}/{id}.operation.debug.log   DEBUG
//	{base}/{id}_trail/{elapsed}_{id}.json
//	{base}/{id}.live/                 liveness lock files
//	{base}/backup/{id}/{operation.json, operation.log, operation.debug.log, trail/}
//
// Every change is: in-process lock → flock of the lock file → read →
// validate → modify → write a temp file → (fsync) → rename → (fsync dir) →
// unlock. Files are never written in place, so a reader without the lock
// always sees a whole file. The callbacks of Options run after the locks
// are released. names.go lists every name the store uses, safefs.go says
// how it keeps from following symbolic links, lock.go how it locks.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure a Store. The zero value keeps no trail and no backups
// beyond what is archived.
type Options struct {
	Durable       bool          // fsync file and directory on every write
	MaxTrail      int           // trail snapshots kept per operation; 0 keeps none
	TrailInterval time.Duration // at most one snapshot per interval, across processes
	MaxBackups    int           // archived operations kept; 0 keeps all

	// OnLogLine and OnBackupCreated are called after the change that caused
	// them, once the locks are released.
	OnLogLine       func(operationID, line string)
	OnBackupCreated func(operationID, dir string) // called after an archive
}

// Open returns the Store for dir, creating the directory if needed, and
// removes the temp files that killed writers and the lock files that
// older versions left behind (sweep.go).
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts, ops: make(map[string]*entry)}
	s.sweepDir()
	return s, nil
}

// Dir returns the directory of the store.
func (s *Store) Dir() string { return s.dir }

// Probe checks that the directory can be used now: it opens it, as every
// change opens files in it. The error says why not: no descriptor left
// (EMFILE), no permission, no directory.
func (s *Store) Probe() error {
	fd, err := sysOpen("open", s.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// Close waits, at most a second, for the changes in progress and the lock
// waits that their callers gave up (see lock.go), then closes the lock
// files it keeps open (kept.go). The Store must not be used after.
func (s *Store) Close() error {
	s.busy.wait(closeGrace)
	s.closeKept()
	return nil
}

// StatePath returns the path of the state file of id.
func (s *Store) StatePath(id string) string { return s.path(stateName(id)) }

func (s *Store) lockPath(id string) string     { return s.path(lockName(id)) }
func (s *Store) logPath(id string) string      { return s.path(logName(id)) }
func (s *Store) debugLogPath(id string) string { return s.path(debugLogName(id)) }
func (s *Store) trailDir(id string) string     { return s.path(trailName(id)) }

// BackupDir returns the directory an archived operation is moved to.
func (s *Store) BackupDir(id string) string { return s.path(backupDirName(id)) }

func notFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, id) }

// Tx is one change of a state file, handed to the function given to Update.
// Lines logged through it are appended after the state is written, while
// the lock is still held, so the log follows the order of changes.
type Tx struct {
	Data *Data // the state to change; a copy the function may modify
	logs []logLine
}

type logLine struct{ level, participant, msg string }

// Log queues a log line; level is DEBUG, INFO, WARNING or ERROR.
func (tx *Tx) Log(level, participant, msg string) {
	tx.logs = append(tx.logs, logLine{level, participant, msg})
}

// notes collects what the callbacks must hear of a change. They hear it
// after the locks are released: a callback never runs under a lock.
type notes struct {
	lines  []string // log lines written
	backup string   // the backup directory created, if any
}

func (s *Store) notify(id string, n *notes) {
	if cb := s.opts.OnLogLine; cb != nil {
		for _, line := range n.lines {
			cb(id, line)
		}
	}
	if cb := s.opts.OnBackupCreated; cb != nil && n.backup != "" {
		cb(id, n.backup)
	}
}

// ErrNoChange, returned by an Update function, ends the update without
// writing; Update then returns the unchanged state and no error.
var ErrNoChange = errors.New("no change")

// Create writes the first state of a new operation. It fails with ErrExists
// if a state file (live or archived) already has d.OperationID. The Store
// keeps d: it must not be modified after.
func (s *Store) Create(ctx context.Context, d *Data, logs func(tx *Tx)) error {
	id := d.OperationID
	if err := CheckOperationID(id); err != nil {
		return err
	}
	var n notes
	err := s.create(ctx, d, logs, &n)
	s.notify(id, &n)
	return err
}

func (s *Store) create(ctx context.Context, d *Data, logs func(tx *Tx), n *notes) error {
	id := d.OperationID
	e, unlock, err := s.lock(ctx, id, true)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(s.StatePath(id)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, id)
	}
	// From here on, until a state is written, the operation has no live
	// state: its lock file goes on unlock.
	e.gone = true
	if _, err := os.Lstat(filepath.Join(s.BackupDir(id), archivedState)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, id)
	}
	tx := &Tx{Data: d}
	if logs != nil {
		logs(tx)
	}
	err = s.commit(e, id, tx, n)
	if _, serr := os.Lstat(s.StatePath(id)); err != nil && serr == nil {
		e.gone = false // written, though the change failed after
	}
	return err
}

// Update applies fn to the current state of id under the lock and writes
// the result. It returns the state as written (shared: do not modify). An
// operation that is not live is ErrNotFound, even if archived: use Read to
// see archived states. When the new state is completed or failed, the
// operation is archived before the lock is released; a live state found
// finished (its writer died before archiving it) is archived then, and is
// ErrNotFound too.
func (s *Store) Update(ctx context.Context, id string, fn func(tx *Tx) error) (*Data, error) {
	if err := CheckOperationID(id); err != nil {
		return nil, err
	}
	var n notes
	d, err := s.update(ctx, id, fn, &n)
	s.notify(id, &n)
	return d, err
}

func (s *Store) update(ctx context.Context, id string, fn func(tx *Tx) error, n *notes) (*Data, error) {
	e, unlock, err := s.lock(ctx, id, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := s.load(e, id, s.StatePath(id), true)
	if errors.Is(err, fs.ErrNotExist) {
		e.gone = true
		return nil, notFound(id)
	}
	if err != nil {
		return nil, err
	}
	if cur.Finished() {
		if err := s.archive(e, id, n); err != nil {
			return nil, err
		}
		return nil, notFound(id)
	}
	tx := &Tx{Data: cur.Clone()}
	if err := fn(tx); err != nil {
		if errors.Is(err, ErrNoChange) {
			s.appendLogs(id, tx.logs, n)
			return cur, nil
		}
		return nil, err
	}
	if err := s.commit(e, id, tx, n); err != nil {
		return nil, err
	}
	return tx.Data, nil
}

// commit writes tx.Data, appends the logs, takes a trail snapshot when one
// is due and archives a finished operation. The caller holds the lock. A
// log line that cannot be written does not undo the change.
func (s *Store) commit(e *entry, id string, tx *Tx, n *notes) error {
	if tx.Data.OperationID != id {
		return fmt.Errorf("ledger: a change may not rename operation %s to %q", id, tx.Data.OperationID)
	}
	raw, spans := e.frames.encode(tx.Data, e.spare, e.spans)
	if err := s.writeFile(s.StatePath(id), raw); err != nil {
		return err
	}
	e.gone = false
	s.setCache(e, &cached{raw: raw, data: tx.Data})
	// The encoding before is no longer cached (a reader comparing with it
	// held mu, taken by setCache): its buffer is free.
	e.spare, e.spans = e.frames.accept(tx.Data.CallFrames, raw, spans)
	s.appendLogs(id, tx.logs, n)
	if tx.Data.Finished() {
		return s.archive(e, id, n)
	}
	s.snapshot(e, id, tx.Data)
	return nil
}

// Read returns the state of id: the live file, or else the archived one
// (whose state is completed or failed). The result is shared: do not modify.
// Read takes no file lock and does not wait for changes in progress:
// files are replaced whole, never written in place.
func (s *Store) Read(id string) (*Data, error) {
	if err := CheckOperationID(id); err != nil {
		return nil, err
	}
	d, err := s.load(s.entry(id), id, s.StatePath(id), false)
	if errors.Is(err, fs.ErrNotExist) {
		var raw []byte
		if raw, err = s.readArchived(id, archivedState); err == nil {
			d, err = decode(id, filepath.Join(s.BackupDir(id), archivedState), raw)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(id)
	}
	return d, err
}

// load reads the state file of id at path and decodes it, unless it holds
// exactly the bytes cached in e (which may be nil). locked says the caller
// holds e's lock, so e.rbuf may be used.
func (s *Store) load(e *entry, id, path string, locked bool) (*Data, error) {
	buf, err := sysReadFile(path, func(size int) []byte {
		if locked && cap(e.rbuf) >= size {
			return e.rbuf[:size]
		}
		return make([]byte, size)
	})
	if err != nil {
		return nil, err
	}
	if e != nil {
		if d := e.cachedData(buf); d != nil {
			if locked {
				e.rbuf = buf
			}
			return d, nil
		}
	}
	d, err := decode(id, path, buf)
	if err != nil {
		return nil, err
	}
	if e != nil {
		s.setCache(e, &cached{raw: buf, data: d}) // buf belongs to the cache now
		if locked {
			e.rbuf = nil
		}
	}
	return d, nil
}

// decode decodes and validates the state file of id read from path.
func decode(id, path string, raw []byte) (*Data, error) {
	d := new(Data)
	if err := json.Unmarshal(raw, d); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	if d.OperationID != id {
		// The id names the files a change writes: never trust another.
		return nil, &CorruptError{Path: path, Field: "operationId", Err: fmt.Errorf("%q does not match the file name", d.OperationID)}
	}
	if fe := validate(d); fe != nil {
		return nil, &CorruptError{Path: path, Field: fe.field, Err: fe.err}
	}
	return d, nil
}

// CorruptError reports a ledger file that does not parse, or whose
// content is not a valid state. The file is left as it is. It matches
// ErrCorrupt with errors.Is.
type CorruptError struct {
	Path  string // the file
	Field string // the JSON field that is missing or invalid, as "callFrames[2].state"; empty if the file does not parse
	Err   error  // what is wrong
}

func (e *CorruptError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("ledger: corrupt ledger file %s: field %s: %v", e.Path, e.Field, e.Err)
	}
	return fmt.Sprintf("ledger: corrupt ledger file %s: %v", e.Path, e.Err)
}

// Unwrap returns Err.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// writeFile replaces path with data through a new temp file in the same
// directory. The file gets mode 0644 less the umask.
func (s *Store) writeFile(path string, data []byte) error {
	if err := injectedWriteFault(path); err != nil {
		return err
	}
	fd, tmp, err := createTemp(path)
	if err != nil {
		return err
	}
	err = sysWrite(tmp, fd, data)
	if err == nil && s.opts.Durable {
		err = syncFD(tmp, fd)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = &fs.PathError{Op: "close", Path: tmp, Err: cerr}
	}
	if err == nil {
		// Not os.Rename, which first stats the target.
		if rerr := unix.Rename(tmp, path); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: tmp, New: path, Err: rerr}
		}
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if s.opts.Durable {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// createTemp creates a new temp file for path (see tempName).
func createTemp(path string) (int, string, error) {
	for range 100 {
		tmp := tempName(path)
		fd, err := sysOpen("create", tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return fd, tmp, err
	}
	return -1, "", fmt.Errorf("ledger: no free temp file name for %s", path)
}

// syncFD is fsync; tests count the calls through it.
var syncFD = func(path string, fd int) error {
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: path, Err: err}
	}
	return nil
}

func syncDir(dir string) error {
	fd, err := sysOpen("open", dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return syncFD(dir, fd)
}

// List returns the ids of the live operations in the directory, sorted.
// It reads the directory in batches and keeps only the ids.
func (s *Store) List() ([]string, error) {
	f, err := os.Open(s.dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []string
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if id, ok := strings.CutSuffix(name, ".operation.json"); ok && CheckOperationID(id) == nil {
				ids = append(ids, id)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(ids)
	return ids, nil
}
