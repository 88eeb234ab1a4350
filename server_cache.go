package ledger

import (
	"container/list"
	"sync"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
	"github.com/tomdist/ledger/journal"
)

// The server keeps, for the operations it serves, its latest view and the
// records before it: a client at any recent position gets what follows
// it without a read of the store, and a change sent again finds its key.
// The cache is bounded in operations and in records per operation; an
// operation not used for a while is dropped, and read again from the store
// when a request comes.

const (
	maxCachedOps     = 1024 // operations kept
	maxCachedRecords = 1024 // records kept per operation
)

// opCache is the bounded set of cached operations, least recently used
// dropped first. Entries in use are not dropped.
type opCache struct {
	mu  sync.Mutex // guards ops, lru
	ops map[string]*cachedOp
	lru list.List // of *cachedOp, most recent at the front
	max int
}

func newOpCache(max int) *opCache {
	return &opCache{ops: make(map[string]*cachedOp), max: max}
}

// cachedOp is what the server knows of one operation.
type cachedOp struct {
	id    string
	elem  *list.Element // in opCache.lru
	users int           // requests using it; guarded by opCache.mu

	mu   sync.Mutex // guards v, recs
	v    view
	recs []journal.Record // the records up to v.rev, oldest first
}

// get returns the entry of id, in use until put.
func (c *opCache) get(id string) *cachedOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	co := c.ops[id]
	if co == nil {
		co = &cachedOp{id: id}
		c.ops[id] = co
		co.elem = c.lru.PushFront(co)
	} else {
		c.lru.MoveToFront(co.elem)
	}
	co.users++
	c.evict()
	return co
}

// put ends a use of co.
func (c *opCache) put(co *cachedOp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	co.users--
	c.evict()
}

// evict drops the least recently used entries beyond the bound that are
// not in use. c.mu is held.
func (c *opCache) evict() {
	for e := c.lru.Back(); e != nil && len(c.ops) > c.max; {
		prev := e.Prev()
		if co := e.Value.(*cachedOp); co.users == 0 {
			c.lru.Remove(e)
			delete(c.ops, co.id)
		}
		e = prev
	}
}

func (co *cachedOp) view() view {
	co.mu.Lock()
	defer co.mu.Unlock()
	return co.v
}

// take records nv, reached from v by reading tail (whose records end at
// nv), if it is newer than what co has. co.recs stay the records that end
// at co.v, without a gap.
func (co *cachedOp) take(v view, tail journal.Tail, nv view) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if nv.d == nil || !co.v.newer(nv) {
		return
	}
	if tail.Snapshot == nil && v.rev <= co.v.rev && co.v.rev-v.rev <= journal.Rev(len(tail.Records)) {
		co.recs = append(co.recs, tail.Records[co.v.rev-v.rev:]...)
	} else {
		co.recs = append([]journal.Record(nil), tail.Records...)
	}
	if n := len(co.recs); n > maxCachedRecords {
		co.recs = append([]journal.Record(nil), co.recs[n-maxCachedRecords:]...)
	}
	co.v = nv
}

// tailAfter returns what a client at position after has not seen: the
// records kept after it, or the state if they do not reach back to it.
func (co *cachedOp) tailAfter(after journal.Rev) *wire.Tail {
	co.mu.Lock()
	defer co.mu.Unlock()
	t := &wire.Tail{Success: true, Rev: uint64(co.v.rev), Archived: co.v.done}
	if after >= co.v.rev {
		return t
	}
	first := co.v.rev + 1 - journal.Rev(len(co.recs))
	if len(co.recs) > 0 && after+1 >= first {
		for _, r := range co.recs[after+1-first:] {
			t.Records = append(t.Records, wire.Record{Rev: uint64(r.Rev), Body: r.Body})
		}
		return t
	}
	t.Snapshot = store.Encode(co.v.d)
	t.Base = uint64(co.v.rev)
	return t
}
