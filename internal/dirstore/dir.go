// Package dirstore is the journal store of a ledger directory: the only
// code that touches ledger files. It keeps the layout of the Dart ledger
// where it can:
//
//	{base}/{id}.operation.journal     the truth: header, snapshot, records
//	{base}/{id}.operation.json        the state document, derived: written
//	                                  at creation, compaction and archive
//	{base}/{id}.operation.log         INFO and above, derived from the records
//	{base}/{id}.operation.debug.log   DEBUG, derived from the records
//	{base}/{id}.operation.lock        flock target while the operation lives
//	{base}/{id}_trail/{elapsed}_{id}.json   snapshots of the state document
//	{base}/{id}.live/                 liveness lock and beat files
//	{base}/backup/{id}/               operation.journal, operation.json,
//	                                  operation.log, operation.debug.log, trail/
//
// Every change is: in-process lock → flock of the lock file → read the
// records after the writer's position → decide → one O_APPEND write of the
// new records → (fdatasync) → append their log lines → unlock. Readers take
// no lock: they read the bytes after their position and stop at a torn
// line. The store never follows a symlink to create or delete, and never
// writes outside its directory.
package dirstore

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tomdist/ledger/journal"
)

// Options configure a Dir. The zero value keeps no trail and every
// backup.
type Options struct {
	// Durable makes every change durable before it is acknowledged: the
	// journal is fdatasynced after each append (writers queued behind the
	// lock share a sync), and files and directories are synced when they
	// are renamed.
	Durable bool
	// MaxTrail is how many trail snapshots are kept per operation; 0
	// keeps none.
	MaxTrail int
	// MaxBackups is how many archived operations are kept; 0 keeps all.
	MaxBackups int
	// Poll, when positive, makes Watch poll the directory at this interval
	// instead of relying on file system events (for network file systems,
	// which do not deliver other machines' changes). Zero means events,
	// with polling only where the file system is known not to deliver
	// them.
	Poll time.Duration
	// Host is the name of this host in liveness records. Zero means
	// os.Hostname.
	Host string

	// OnLogLine and OnBackupCreated are called after a change of this
	// Dir that wrote log lines or archived an operation, once the locks
	// are released.
	OnLogLine       func(operationID, line string)
	OnBackupCreated func(operationID, dir string)

	// OnLockWait, when set, is called after a change waited for the lock
	// of an operation (held by another process, or by another change in
	// this one), with how long it waited. A change that found the lock
	// free does not call it.
	OnLockWait func(waited time.Duration)
}

// Dir is a ledger directory. It implements journal.Store. It is safe for
// concurrent use, and several Dirs, in one process or many, may share a
// directory.
type Dir struct {
	path string
	root *os.Root
	opts Options
	host string

	mu     sync.Mutex // guards ops, idle, closed
	ops    map[string]*entry
	idle   list.List // of *entry that nobody uses, most recent first
	closed bool

	watch watcher  // file system events, started by the first Watch
	live  liveness // observers of other processes' leases
	sync  syncer   // shared fdatasync of journals

	noTempDir atomic.Bool // tempDir failed where the directory did not (see writeFile)
}

// Open returns the Dir at path, creating the directory if needed.
func Open(path string, o Options) (*Dir, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	host := o.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	d := &Dir{path: abs, root: root, opts: o, host: host, ops: make(map[string]*entry)}
	d.watch.d = d
	d.live.d = d
	d.removeStaleTemps()
	return d, nil
}

// Path returns the absolute path of the directory.
func (d *Dir) Path() string { return d.path }

// Close stops the watcher and releases the directory. Leases held through
// d end. Waits for a lock held by another process are given up; a
// goroutine still queued for such a lock ends when it gets it.
func (d *Dir) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.watch.close()
	d.live.close()
	return d.root.Close()
}

// File names of an operation.
const (
	extJournal = ".operation.journal"
	extState   = ".operation.json"
	extLog     = ".operation.log"
	extDebug   = ".operation.debug.log"
	extLock    = ".operation.lock"
	extLive    = ".live"
	sufTrail   = "_trail"
	backupDir  = "backup"
)

func journalName(id string) string { return id + extJournal }
func stateName(id string) string   { return id + extState }
func lockName(id string) string    { return id + extLock }
func liveName(id string) string    { return id + extLive }
func trailName(id string) string   { return id + sufTrail }
func logName(id string, debug bool) string {
	if debug {
		return id + extDebug
	}
	return id + extLog
}
func backupName(id string) string { return backupDir + "/" + id }

// entry is what a Dir keeps of one operation in this process. The holder
// of sem owns the fields marked so.
type entry struct {
	sem  chan struct{} // one token: held while the operation is changed
	refs int           // users of the entry; guarded by Dir.mu
	id   string        // the operation; guarded by Dir.mu
	idle *list.Element // in Dir.idle while nobody uses it; guarded by Dir.mu

	mu  sync.Mutex // guards pos
	pos position   // where this process last read the journal
}

// position is a place in a journal file: after the record rev, at byte
// off of the file with identity file whose first line is hdr.
type position struct {
	file    fs.FileInfo
	hdr     []byte    // the header line, newline included (see header.Epoch)
	created time.Time // when the journal was first created
	base    journal.Rev
	body    int64 // offset of the first record line
	rev     journal.Rev
	off     int64
	logEnd  [2]int64
	// offs are where the records base+1 .. rev start in the file, so
	// that a reader a little behind reads from its record, not from the
	// file's start. Copies of a position share it; it is only appended
	// to, so a copy sees a prefix that stays true.
	offs []int64
}

// maxIdleEntries bounds the entries kept of operations nobody uses now:
// their positions make the next read of those journals cheap, and a
// long-lived process keeps no more of the operations it once touched.
const maxIdleEntries = 256

// acquire returns the entry of id, counted as used until release.
func (d *Dir) acquire(id string) (*entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	e := d.ops[id]
	if e == nil {
		e = &entry{sem: make(chan struct{}, 1)}
		d.ops[id] = e
	}
	if e.idle != nil {
		d.idle.Remove(e.idle)
		e.idle = nil
	}
	e.refs++
	return e, nil
}

// release drops a use of e. An entry nobody uses is kept among the idle
// ones, the least recently used of which go beyond maxIdleEntries.
func (d *Dir) release(id string, e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e.refs--
	if e.refs > 0 || d.ops[id] != e {
		return
	}
	e.id = id
	e.idle = d.idle.PushFront(e)
	for d.idle.Len() > maxIdleEntries {
		old := d.idle.Remove(d.idle.Back()).(*entry)
		old.idle = nil
		delete(d.ops, old.id)
	}
}

var errClosed = errors.New("dirstore: closed")

// notFound returns ErrNotFound for id.
func notFound(id string) error { return fmt.Errorf("%w: %s", journal.ErrNotFound, id) }

// corrupt returns an ErrCorrupt error naming the file.
func (d *Dir) corrupt(name string, err error) error {
	return &CorruptError{Path: filepath.Join(d.path, filepath.FromSlash(name)), Err: err}
}

// CorruptError reports a file of the directory that does not have the
// store's form. The file is left as it is. It matches journal.ErrCorrupt.
type CorruptError struct {
	Path string // the file
	Err  error  // what is wrong with it
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("ledger: corrupt ledger file %s: %v", e.Path, e.Err)
}

// Unwrap returns what is wrong.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is journal.ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == journal.ErrCorrupt }

// List implements journal.Store.
func (d *Dir) List(ctx context.Context, archived bool) ([]string, error) {
	if archived {
		bs, err := d.backups()
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(bs))
		for i, b := range bs {
			ids[i] = b.id
		}
		return ids, nil
	}
	ents, err := readDirNames(d.root, ".")
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var ids []string
	for _, name := range ents {
		id, ok := strings.CutSuffix(name, extJournal)
		if !ok {
			id, ok = strings.CutSuffix(name, extState)
		}
		if ok && validID(id) && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// readDirNames returns the names in dir of root, unsorted.
func readDirNames(root *os.Root, dir string) ([]string, error) {
	f, err := root.OpenFile(dir, os.O_RDONLY|nonBlock, 0) // a FIFO in its place does not block
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// validID reports whether id may name files of the directory: the store
// is given checked ids, but names it reads from the directory are not.
func validID(id string) bool {
	if id == "" || len(id) > 200 || strings.Contains(id, "..") || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// checkID refuses an id that could name something else than the
// operation's own files.
func checkID(id string) error {
	if !validID(id) {
		return fmt.Errorf("dirstore: invalid operation id %q", id)
	}
	return nil
}

// Probe checks that the directory can be used: that it opens.
func (d *Dir) Probe() error {
	f, err := d.root.Open(".")
	if err != nil {
		return err
	}
	return f.Close()
}
