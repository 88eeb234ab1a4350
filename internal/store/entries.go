package store

import (
	"bytes"
	"container/list"
	"sync"
	"time"
)

// Store is a ledger directory. It is safe for concurrent use, and several
// Stores, in one process or many, may share a directory.
//
// A Store keeps no descriptor open between changes, and an entry (caches)
// for at most maxIdleEntries operations that no goroutine is using, so
// that a long-lived process (the server) does not grow with every
// operation it ever touched.
type Store struct {
	dir  string
	opts Options

	mu     sync.Mutex        // guards ops, recent, and refs and elem of every entry
	ops    map[string]*entry // by operation id
	recent list.List         // of *entry, the most recently used first

	busy activity // goroutines that hold or wait for a lock of this Store (lock.go)
}

// maxIdleEntries is how many entries of operations that no goroutine is
// using a Store keeps: an entry saves a decode when the file has not
// changed, which matters for the operations in use, not for history.
const maxIdleEntries = 128

// entry is the per-operation state of one Store. The goroutine holding sem
// owns the fields marked so.
type entry struct {
	id   string        // the operation; set once
	elem *list.Element // in Store.recent (Store.mu)
	refs int           // goroutines between acquire and release (Store.mu)

	sem    chan struct{} // one token: the holder owns the lock of the operation
	gone   bool          // the operation has no live state: its lock file goes on unlock (sem)
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

// entry returns the entry of id for a reader, which may go on using it
// after it was dropped.
func (s *Store) entry(id string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entryLocked(id)
}

// acquire returns the entry of id for a goroutine about to take its lock.
// The entry is not dropped until release: so there is one entry, one sem
// and one goroutine touching the flock per operation in a Store.
func (s *Store) acquire(id string) *entry {
	s.busy.add()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(id)
	e.refs++
	return e
}

// release ends what acquire began. drop says the operation is gone: its
// entry is dropped unless another goroutine uses it.
func (s *Store) release(e *entry, drop bool) {
	s.mu.Lock()
	e.refs--
	if drop && e.refs == 0 && s.ops[e.id] == e {
		s.recent.Remove(e.elem)
		delete(s.ops, e.id)
	}
	s.mu.Unlock()
	s.busy.done()
}

func (s *Store) entryLocked(id string) *entry {
	if e := s.ops[id]; e != nil {
		s.recent.MoveToFront(e.elem)
		return e
	}
	e := &entry{id: id, sem: make(chan struct{}, 1)}
	e.elem = s.recent.PushFront(e)
	s.ops[id] = e
	s.trim()
	return e
}

// trim drops the least recently used entries that no goroutine holds,
// beyond maxIdleEntries.
func (s *Store) trim() {
	for el := s.recent.Back(); el != nil && len(s.ops) > maxIdleEntries; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.refs == 0 {
			s.recent.Remove(el)
			delete(s.ops, e.id)
		}
		el = prev
	}
}

// forget drops what the entry caches of an operation that is gone. The
// caller holds sem.
func (e *entry) forget() {
	e.rbuf, e.spare, e.spans, e.frames = nil, nil, nil, frameCache{}
	e.setCache(nil)
}
