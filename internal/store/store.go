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
// a whole file, and a decoded file can be cached by its inode.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure a Store. The zero value keeps no trail and no backups
// beyond what is archived.
type Options struct {
	Durable         bool          // fsync file and directory on every write
	MaxTrail        int           // trail snapshots kept per operation; 0 keeps none
	TrailInterval   time.Duration // at most one snapshot per interval and process
	MaxBackups      int           // archived operations kept; 0 keeps all
	OnLogLine       func(operationID, line string)
	OnBackupCreated func(operationID, dir string)
}

// Store is a ledger directory. It is safe for concurrent use, and several
// Stores, in one process or many, may share a directory.
type Store struct {
	dir  string
	opts Options

	mu  sync.Mutex // guards ops
	ops map[string]*entry
}

// entry is the per-operation state of one Store.
type entry struct {
	sem   chan struct{}          // held (one token) by the goroutine that owns lock
	lock  *os.File               // the open lock file; used by the sem holder only
	cache atomic.Pointer[cached] // last file this process read or wrote
	trail time.Time              // last snapshot; guarded by sem
}

type cached struct {
	key  fileKey
	data *Data
}

// fileKey names one version of a state file. Files are replaced, never
// rewritten, so the same key means the same content.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

// Open returns the Store for dir, creating the directory if needed, and
// removes temp files that a killed writer left behind.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts, ops: make(map[string]*entry)}
	s.removeStaleTemps()
	return s, nil
}

// Dir returns the directory of the store.
func (s *Store) Dir() string { return s.dir }

// Close releases the open lock files. The Store must not be used after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.ops {
		e.sem <- struct{}{}
		if e.lock != nil {
			e.lock.Close()
		}
		delete(s.ops, id)
	}
	return nil
}

// StatePath returns the path of the state file of id.
func (s *Store) StatePath(id string) string {
	return filepath.Join(s.dir, id+".operation.json")
}

func (s *Store) lockPath(id string) string { return s.StatePath(id) + ".lock" }
func (s *Store) logPath(id string) string  { return filepath.Join(s.dir, id+".operation.log") }
func (s *Store) debugLogPath(id string) string {
	return filepath.Join(s.dir, id+".operation.debug.log")
}
func (s *Store) trailDir(id string) string { return filepath.Join(s.dir, id+"_trail") }

// BackupDir returns the directory an archived operation is moved to.
func (s *Store) BackupDir(id string) string { return filepath.Join(s.dir, "backup", id) }

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

// lock takes the in-process lock and the file lock of id, waiting no longer
// than ctx allows.
func (s *Store) lock(ctx context.Context, id string) (*entry, func(), error) {
	e := s.entry(id)
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w %s: %w", ErrLockTimeout, s.lockPath(id), context.Cause(ctx))
	}
	release := func() { <-e.sem }
	if e.lock == nil {
		f, err := os.OpenFile(s.lockPath(id), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			release()
			return nil, nil, err
		}
		e.lock = f
	}
	if err := flockContext(ctx, e.lock); err != nil {
		release()
		return nil, nil, fmt.Errorf("%w %s: %w", ErrLockTimeout, s.lockPath(id), err)
	}
	return e, func() {
		_ = unix.Flock(int(e.lock.Fd()), unix.LOCK_UN)
		release()
	}, nil
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
	Data *Data
	logs []logLine
}

type logLine struct{ level, participant, msg string }

// Log queues a log line; level is DEBUG, INFO, WARNING or ERROR.
func (tx *Tx) Log(level, participant, msg string) {
	tx.logs = append(tx.logs, logLine{level, participant, msg})
}

// ErrNoChange, returned by an Update function, ends the update without
// writing; Update then returns the unchanged state and no error.
var ErrNoChange = errors.New("no change")

// Create writes the first state of a new operation. It fails with ErrExists
// if a state file (live or archived) already has d.OperationID.
func (s *Store) Create(ctx context.Context, d *Data, logs func(tx *Tx)) error {
	id := d.OperationID
	if err := CheckOperationID(id); err != nil {
		return err
	}
	e, unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	for _, p := range []string{s.StatePath(id), filepath.Join(s.BackupDir(id), "operation.json")} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, id)
		}
	}
	tx := &Tx{Data: d}
	if logs != nil {
		logs(tx)
	}
	return s.commit(e, tx)
}

// Update applies fn to the current state of id under the lock and writes
// the result. It returns the state as written (shared: do not modify). An
// operation that is not live is ErrNotFound, even if archived: use Read to
// see archived states. When the new state is completed or failed, the
// operation is archived before the lock is released.
func (s *Store) Update(ctx context.Context, id string, fn func(tx *Tx) error) (*Data, error) {
	if err := CheckOperationID(id); err != nil {
		return nil, err
	}
	// Do not create a lock file for an operation that does not exist.
	if _, err := os.Stat(s.StatePath(id)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	e, unlock, err := s.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := s.load(e, s.StatePath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	tx := &Tx{Data: cur.Clone()}
	if err := fn(tx); err != nil {
		if errors.Is(err, ErrNoChange) {
			s.appendLogs(id, tx.logs)
			return cur, nil
		}
		return nil, err
	}
	if err := s.commit(e, tx); err != nil {
		return nil, err
	}
	return tx.Data, nil
}

// commit writes tx.Data, appends the logs, takes a trail snapshot when one
// is due and archives a finished operation. The caller holds the lock.
func (s *Store) commit(e *entry, tx *Tx) error {
	id := tx.Data.OperationID
	path := s.StatePath(id)
	key, err := s.writeFile(path, Encode(tx.Data))
	if err != nil {
		return err
	}
	e.cache.Store(&cached{key: key, data: tx.Data})
	s.appendLogs(id, tx.logs)
	if tx.Data.Finished() {
		return s.archive(e, id)
	}
	s.snapshot(e, tx.Data)
	return nil
}

// Read returns the state of id: the live file, or else the archived one
// (whose state is completed or failed). The result is shared: do not modify.
func (s *Store) Read(id string) (*Data, error) {
	if err := CheckOperationID(id); err != nil {
		return nil, err
	}
	d, err := s.load(s.entry(id), s.StatePath(id))
	if errors.Is(err, fs.ErrNotExist) {
		d, err = s.load(nil, filepath.Join(s.BackupDir(id), "operation.json"))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return d, err
}

// load reads and decodes path, or returns the cached decode when the file
// is still the one last seen through e.
func (s *Store) load(e *entry, path string) (*Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	key := keyOf(fi)
	if e != nil {
		if c := e.cache.Load(); c != nil && c.key == key {
			return c.data, nil
		}
	}
	buf := make([]byte, fi.Size())
	if _, err := readFull(f, buf); err != nil {
		return nil, err
	}
	d := new(Data)
	if err := json.Unmarshal(buf, d); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	if d.OperationID == "" {
		return nil, &CorruptError{Path: path, Err: errors.New("no operationId")}
	}
	if e != nil {
		e.cache.Store(&cached{key: key, data: d})
	}
	return d, nil
}

func readFull(f *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := f.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// CorruptError reports a ledger file that does not parse. The file is left
// as it is. It matches ErrCorrupt with errors.Is.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("ledger: corrupt ledger file %s: %v", e.Path, e.Err)
}

// Unwrap returns the parse error.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func keyOf(fi fs.FileInfo) fileKey {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}
	}
	return fileKey{
		dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}
}

// writeFile replaces path with data through a temp file in the same
// directory and returns the key of the new file.
func (s *Store) writeFile(path string, data []byte) (fileKey, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fileKey{}, err
	}
	tmp := f.Name()
	fail := func(err error) (fileKey, error) {
		f.Close()
		os.Remove(tmp)
		return fileKey{}, err
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if s.opts.Durable {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fileKey{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fileKey{}, err
	}
	if s.opts.Durable {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fileKey{}, err
		}
	}
	// Stat after the rename, which changes ctime on some file systems.
	fi, err := os.Stat(path)
	if err != nil {
		return fileKey{}, err
	}
	return keyOf(fi), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeStaleTemps deletes temp files older than a minute: a writer that was
// killed between create and rename leaves one; live writers finish in far
// less.
func (s *Store) removeStaleTemps() {
	matches, _ := filepath.Glob(filepath.Join(s.dir, "*.operation.json.tmp-*"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && time.Since(fi.ModTime()) > time.Minute {
			os.Remove(m)
		}
	}
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

// ListArchived returns the ids of archived operations, oldest first.
func (s *Store) ListArchived() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "backup"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type backup struct {
		id  string
		mod time.Time
	}
	var bs []backup
	for _, de := range ents {
		if !de.IsDir() || CheckOperationID(de.Name()) != nil {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		bs = append(bs, backup{de.Name(), fi.ModTime()})
	}
	slices.SortFunc(bs, func(a, b backup) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.id
	}
	return ids, nil
}
