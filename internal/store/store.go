// Package store is the only code that touches ledger files. It keeps the
// Dart layout of a ledger directory:
//
//	{base}/{id}.operation.json        state (JSON, 2-space indent)
//	{base}/{id}.operation.json.lock   flock target; permanent
//	{base}/{id}.operation.log         INFO and above
//	{base}/{id}.operation.debug.log   DEBUG
//	{base}/{id}_trail/{elapsed}_{id}.json
//	{base}/{id}.live/                 liveness lock files
//	{base}/backup/{id}/{operation.json, operation.log, operation.debug.log, trail/}
//
// Every change is: in-process lock → flock of the lock file → read →
// modify → write a temp file → (fsync) → rename → (fsync dir) → unlock.
// Files are never written in place, so a reader without the lock always sees
// a whole file. The callbacks of Options run after the locks are released.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// Store is a ledger directory. It is safe for concurrent use, and several
// Stores, in one process or many, may share a directory.
type Store struct {
	dir  string
	opts Options

	mu  sync.Mutex // guards ops
	ops map[string]*entry
}

// entry is the per-operation state of one Store. The goroutine holding sem
// owns the fields marked so.
type entry struct {
	sem    chan struct{} // one token: the holder owns the lock of the operation
	lock   *os.File      // the open lock file, nil until needed (sem)
	stale  bool          // the operation is no longer live: drop lock on unlock (sem)
	rbuf   []byte        // read buffer for the next load under the lock (sem)
	frames frameCache    // the last encoding, reused while frames are unchanged (sem)
	spare  []byte        // buffer for the next encoding, seen by no one else (sem)
	spans  []span        // spans for the next encoding (sem)
	trail  time.Time     // last trail snapshot of this process (sem)

	// mu guards cache. A reader holds it while it compares a file with
	// cache.raw, so that the sem holder reuses an encoding's buffer only
	// once no reader can be looking at it.
	mu    sync.Mutex
	cache *cached // the last state file read or written
}

// cached is one state file, byte for byte, and its decoding. The decoding
// is reused when the file read has exactly these bytes: comparing costs
// far less than decoding, and unlike a comparison of inode numbers and
// times it cannot be fooled by a reused inode written in the same clock
// tick.
type cached struct {
	raw  []byte // the whole file; not modified while cached
	data *Data  // shared, never modified
}

// cachedData returns the cached decoding of raw, if raw is what is cached.
func (e *entry) cachedData(raw []byte) *Data {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cache != nil && bytes.Equal(e.cache.raw, raw) {
		return e.cache.data
	}
	return nil
}

func (e *entry) setCache(c *cached) {
	e.mu.Lock()
	e.cache = c
	e.mu.Unlock()
}

// Open returns the Store for dir, creating the directory if needed, and
// removes temp files that a killed writer left behind.
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

// Close waits for the changes in progress and releases the open lock files.
// The Store must not be used after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.ops {
		e.sem <- struct{}{}
		if e.lock != nil {
			e.lock.Close()
			e.lock = nil
		}
		delete(s.ops, id)
	}
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

func (s *Store) entry(id string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.ops[id]
	if e == nil {
		e = &entry{sem: make(chan struct{}, 1)}
		s.ops[id] = e
	}
	return e
}

func notFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, id) }

// lock takes the in-process lock and the file lock of id, waiting no longer
// than ctx allows. Unless create is set, an operation without a lock file
// and without a state file is ErrNotFound, and no file is created.
func (s *Store) lock(ctx context.Context, id string, create bool) (*entry, func(), error) {
	e := s.entry(id)
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w %s: %w", ErrLockTimeout, s.lockPath(id), context.Cause(ctx))
	}
	if e.lock == nil {
		f, err := s.openLock(id, create)
		if err != nil {
			<-e.sem
			return nil, nil, err
		}
		e.lock = f
	}
	if err := flockContext(ctx, e.lock); err != nil {
		<-e.sem
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%w %s: %w", ErrLockTimeout, s.lockPath(id), err)
		}
		return nil, nil, fmt.Errorf("ledger: lock %s: %w", s.lockPath(id), err)
	}
	return e, func() { s.unlock(e) }, nil
}

// openLock opens the lock file of id. The lock file is permanent: it is
// never deleted, so every process locks the same inode.
func (s *Store) openLock(id string, create bool) (*os.File, error) {
	path := s.lockPath(id)
	if !create {
		f, err := openNoFollow(path, os.O_RDWR)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		// A state without a lock file was written by another
		// implementation; no state at all is an unknown operation.
		if _, err := os.Lstat(s.StatePath(id)); errors.Is(err, fs.ErrNotExist) {
			return nil, notFound(id)
		}
	}
	return openNoFollow(path, os.O_RDWR|os.O_CREATE)
}

// openNoFollow opens path with O_NOFOLLOW: a symbolic link is a
// CorruptError, and O_CREATE never creates what a dangling link names.
func openNoFollow(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW, 0o644)
	if errors.Is(err, unix.ELOOP) {
		return nil, &CorruptError{Path: path, Err: errSymlink}
	}
	return f, err
}

// unlock releases the locks taken by lock. When the operation turned out
// not to be live, the lock file is closed and the cached state dropped, so
// that a long-lived process does not keep a descriptor per operation it
// ever touched.
func (s *Store) unlock(e *entry) {
	if e.stale {
		e.lock.Close() // releases the flock
		e.lock, e.stale = nil, false
		e.rbuf, e.spare, e.spans, e.frames = nil, nil, nil, frameCache{}
		e.setCache(nil)
	} else {
		_ = unix.Flock(int(e.lock.Fd()), unix.LOCK_UN)
	}
	<-e.sem
}

// flockContext takes an exclusive flock on f, polling with a growing pause
// so that a waiter honours ctx (a blocking flock cannot be interrupted).
func flockContext(ctx context.Context, f *os.File) error {
	pause := 20 * time.Microsecond
	var timer *time.Timer
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(pause)
			defer timer.Stop()
		} else {
			timer.Reset(pause)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		pause = min(pause*2, 2*time.Millisecond)
	}
}

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
	for _, p := range []string{s.StatePath(id), filepath.Join(s.BackupDir(id), archivedState)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, id)
		}
	}
	tx := &Tx{Data: d}
	if logs != nil {
		logs(tx)
	}
	return s.commit(e, id, tx, n)
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
		e.stale = true
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
	e.setCache(&cached{raw: raw, data: tx.Data})
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
		e.setCache(&cached{raw: buf, data: d}) // buf belongs to the cache now
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

// Unwrap returns the parse error.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// writeFile replaces path with data through a new temp file in the same
// directory. The file gets mode 0644 less the umask.
func (s *Store) writeFile(path string, data []byte) error {
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

// List returns the ids of the live operations in the directory.
func (s *Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, de := range ents {
		if id, ok := strings.CutSuffix(de.Name(), ".operation.json"); ok && CheckOperationID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
