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
// A Store keeps at most maxKeptLocks lock files open between changes. It
// keeps entries (caches) of operations that no goroutine is using only
// within entryBudget, dropping the least recently used first, so that a
// long-lived process (the server) does not grow with every operation it
// ever touched; an operation found gone (archived, unknown) loses its
// entry at once.
type Store struct {
	dir  string
	opts Options

	mu     sync.Mutex        // guards ops, recent, cost, kept, closed, and the fields of entries marked Store.mu
	ops    map[string]*entry // by operation id
	recent list.List         // of *entry, the most recently used first
	cost   int64             // the estimated memory of the entries in ops
	kept   list.List         // of *entry keeping a lock file open, the most recently used first (kept.go)
	closed bool              // Close was called: keep no lock file open

	busy activity // goroutines that hold or wait for a lock of this Store (lock.go)
}

// entryBudget bounds the estimated memory of a Store's entries (see
// entryCost); entries in use are kept beyond it. An entry saves a decode
// when a state file has not changed since this process read or wrote it,
// which matters to the operations in use and to the orphan sweep, which
// reads every live operation. A variable, so that tests can make it small.
var entryBudget int64 = 64 << 20

// entryCost estimates the memory of an entry caching a state file of n
// bytes: the entry, the file, its decoding and the encoding buffers.
func entryCost(n int) int64 { return 512 + 4*int64(n) }

// entry is the per-operation state of one Store. The goroutine holding sem
// owns the fields marked so.
type entry struct {
	id   string        // the operation; set once
	elem *list.Element // in Store.recent; nil once dropped (Store.mu)
	refs int           // goroutines between acquire and release (Store.mu)
	cost int64         // counted in Store.cost while not dropped (Store.mu)

	// The lock file kept open between changes (kept.go), or keptFD -1.
	// Written under Store.mu by the sem holder, or by anyone while refs
	// is 0; read by the sem holder.
	keptFD           int
	keptDev, keptIno uint64
	keptElem         *list.Element // in Store.kept

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

// setCache caches c in e (nil: nothing) and counts what it costs.
func (s *Store) setCache(e *entry, c *cached) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.mu.Lock()
	e.cache = c
	e.mu.Unlock()
	if e.elem == nil {
		return // dropped: a reader's, counted nowhere
	}
	n := 0
	if c != nil {
		n = len(c.raw)
	}
	s.cost += entryCost(n) - e.cost
	e.cost = entryCost(n)
	s.trim()
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
	if e.keptElem != nil {
		s.kept.MoveToFront(e.keptElem)
	}
	return e
}

// release ends what acquire began. drop says the operation is gone: its
// entry is dropped unless another goroutine uses it.
func (s *Store) release(e *entry, drop bool) {
	s.mu.Lock()
	e.refs--
	if drop && e.refs == 0 && e.elem != nil {
		s.dropLocked(e)
	}
	if s.closed && e.refs == 0 && e.keptElem != nil {
		s.closeKeptLocked(e) // an abandoned wait that outlived Close
	}
	s.mu.Unlock()
	s.busy.done()
}

func (s *Store) entryLocked(id string) *entry {
	if e := s.ops[id]; e != nil {
		s.recent.MoveToFront(e.elem)
		return e
	}
	e := &entry{id: id, sem: make(chan struct{}, 1), cost: entryCost(0), keptFD: -1}
	e.elem = s.recent.PushFront(e)
	s.ops[id] = e
	s.cost += e.cost
	s.trim()
	return e
}

// trim drops the least recently used entries that no goroutine holds
// while all entries cost more than entryBudget.
func (s *Store) trim() {
	for el := s.recent.Back(); el != nil && s.cost > entryBudget; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.refs == 0 {
			s.dropLocked(e)
		}
		el = prev
	}
}

// dropLocked removes e from the Store; readers that hold it may go on
// using it.
func (s *Store) dropLocked(e *entry) {
	if e.keptElem != nil {
		s.closeKeptLocked(e)
	}
	s.recent.Remove(e.elem)
	e.elem = nil
	delete(s.ops, e.id)
	s.cost -= e.cost
	e.cost = 0
}

// forget drops what e caches of an operation that is gone. The caller
// holds e.sem.
func (s *Store) forget(e *entry) {
	e.rbuf, e.spare, e.spans, e.frames = nil, nil, nil, frameCache{}
	s.setCache(e, nil)
}
