package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/journal"
)

// memStore is a journal.Store that keeps every journal in memory: a
// ledger of one process, whose leases end with it. It is small enough to
// show the whole contract of package journal; memstore_test.go checks it
// with package journaltest.
type memStore struct {
	mu      sync.Mutex // guards every field
	ops     map[string]*memOp
	order   []string                         // operation ids, oldest first
	members map[string]map[string]*memMember // by operation id, then Member.Key
	closed  bool
}

// memOp is the journal of one operation.
type memOp struct {
	base     journal.Rev      // position of snapshot; records start after it
	snapshot []byte           // nil when none
	records  []journal.Record // the records after base
	logs     [2][]byte        // the INFO-and-above log, the DEBUG log
	archived bool
	watchers map[chan struct{}]bool
}

// memMember is what the store knows of one member's liveness.
type memMember struct {
	m     journal.Member
	lease bool          // it took a lease
	held  bool          // it holds it still
	beat  time.Time     // its last beat
	gone  chan struct{} // closed when its lease ends
}

func newMemStore() *memStore {
	return &memStore{ops: make(map[string]*memOp), members: make(map[string]map[string]*memMember)}
}

var errMemClosed = errors.New("memstore: closed")

// op returns the journal of id; mu is held.
func (s *memStore) op(ctx context.Context, id string) (*memOp, error) {
	switch {
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case s.closed:
		return nil, errMemClosed
	case s.ops[id] == nil:
		return nil, fmt.Errorf("%w: %s", journal.ErrNotFound, id)
	}
	return s.ops[id], nil
}

// tail returns what a reader at position after has not seen; mu is held.
func (o *memOp) tail(id string, after journal.Rev) journal.Tail {
	t := journal.Tail{Base: o.base, Archived: o.archived, Source: "memory:" + id}
	after = min(after, o.base+journal.Rev(len(o.records))) // not past the head
	if after < o.base {
		t.Snapshot = slices.Clone(o.snapshot)
		after = o.base
	}
	t.Records = slices.Clone(o.records[after-o.base:])
	return t
}

// apply appends the records of c, keeps its snapshot and archives, then
// wakes the watchers; it returns the records appended. mu is held.
func (o *memOp) apply(c journal.Change) []journal.Record {
	head := o.base + journal.Rev(len(o.records))
	var added []journal.Record
	for _, r := range c.Records {
		head++
		r.Rev, r.Time = head, time.Now().UTC()
		for _, l := range r.Log {
			l.Message = strings.ReplaceAll(l.Message, "\n", `\n`) // one line each
			i := 0
			if l.Level == "DEBUG" {
				i = 1
			}
			o.logs[i] = append(o.logs[i], journal.FormatLogLine(r.Time, l)+"\n"...)
		}
		added = append(added, r)
	}
	o.records = append(o.records, added...)
	if c.Snapshot != nil { // compaction: the records up to head may go
		o.base, o.snapshot, o.records = head, slices.Clone(c.Snapshot), nil
	}
	o.archived = o.archived || c.Archive
	for ch := range o.watchers {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending: coalesced
		}
	}
	return added
}

func (s *memStore) Create(ctx context.Context, id string, c journal.Change) (journal.Tail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.op(ctx, id); !errors.Is(err, journal.ErrNotFound) {
		if err == nil {
			err = fmt.Errorf("%w: %s", journal.ErrExists, id)
		}
		return journal.Tail{}, err
	}
	o := &memOp{watchers: make(map[chan struct{}]bool)}
	s.ops[id] = o
	s.order = append(s.order, id)
	return journal.Tail{Records: o.apply(c), Archived: o.archived}, nil
}

func (s *memStore) Update(ctx context.Context, id string, after journal.Rev, fn func(journal.Tail) (journal.Change, error)) (journal.Tail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.op(ctx, id)
	if err != nil {
		return journal.Tail{}, err
	}
	if o.archived {
		return journal.Tail{}, fmt.Errorf("%w: %s", journal.ErrArchived, id)
	}
	t := o.tail(id, after)
	c, err := fn(t) // under the lock: nobody appends between t and c
	if err != nil {
		return journal.Tail{}, err
	}
	t.Records = append(t.Records, o.apply(c)...)
	t.Archived = o.archived
	return t, nil
}

func (s *memStore) Read(ctx context.Context, id string, after journal.Rev) (journal.Tail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.op(ctx, id)
	if err != nil {
		return journal.Tail{}, err
	}
	return o.tail(id, after), nil
}

func (s *memStore) ReadLog(ctx context.Context, id string, debug bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.op(ctx, id)
	if err != nil {
		return nil, err
	}
	if debug {
		return slices.Clone(o.logs[1]), nil
	}
	return slices.Clone(o.logs[0]), nil
}

func (s *memStore) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.op(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan struct{}, 1)
	o.watchers[ch] = true
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(o.watchers, ch)
		close(ch)
	})
	return ch, nil
}

func (s *memStore) List(ctx context.Context, archived bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, id := range s.order {
		if s.ops[id].archived == archived {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// member returns the record of m in operation id, made if needed; mu is
// held.
func (s *memStore) member(id string, m journal.Member) *memMember {
	if s.members[id] == nil {
		s.members[id] = make(map[string]*memMember)
	}
	mm := s.members[id][m.Key()]
	if mm == nil {
		mm = &memMember{m: m, gone: make(chan struct{})}
		s.members[id][m.Key()] = mm
	}
	return mm
}

// Hold takes a lease; the operation need not exist yet (a participant
// holds its lease before it creates or joins).
func (s *memStore) Hold(ctx context.Context, id string, m journal.Member) (journal.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errMemClosed
	}
	mm := s.member(id, m)
	if mm.held {
		return nil, fmt.Errorf("memstore: %s holds a lease already", m.Key())
	}
	mm.lease, mm.held, mm.beat, mm.gone = true, true, time.Now(), make(chan struct{})
	return &memLease{s: s, mm: mm}, nil
}

func (s *memStore) Beat(ctx context.Context, id string, m journal.Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.op(ctx, id); err != nil {
		return err
	}
	s.member(id, m).beat = time.Now()
	return nil
}

func (s *memStore) Vitals(ctx context.Context, id string) ([]journal.Vital, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var vs []journal.Vital
	for _, mm := range s.members[id] {
		vs = append(vs, journal.Vital{Member: mm.m, Lease: mm.lease, Held: mm.held, Beat: mm.beat})
	}
	return vs, nil
}

func (s *memStore) Observe(ctx context.Context, id string, m journal.Member) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mm := s.members[id][m.Key()]; mm != nil && mm.held {
		return mm.gone, nil
	}
	gone := make(chan struct{})
	close(gone) // no lease: gone already
	return gone, nil
}

// Close ends every lease held through the store.
func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ms := range s.members {
		for _, mm := range ms {
			mm.end()
		}
	}
	return nil
}

// end ends the lease of mm, if it holds one; the store's mu is held.
func (mm *memMember) end() {
	if mm.held {
		mm.held = false
		close(mm.gone)
	}
}

// memLease is a lease held through a memStore.
type memLease struct {
	s  *memStore
	mm *memMember
}

func (l *memLease) Beat(ctx context.Context) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.mm.beat = time.Now()
	return nil
}

func (l *memLease) Release() error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.mm.end()
	return nil
}

// Open runs a ledger over any journal.Store: here one that keeps its
// journals in memory, for the participants of one process. A Viewer
// reads the same store.
func ExampleOpen() {
	ctx := context.Background()
	store := newMemStore()
	l, err := ledger.Open(store, ledger.Options{ParticipantID: "builder"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close() // closes the store too

	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
	if err != nil {
		log.Fatal(err)
	}
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "compile"})
	if err != nil {
		log.Fatal(err)
	}
	v := ledger.NewViewer(store) // does not close the store
	d, err := v.State(ctx, op.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Description, d.OperationState, len(d.CallFrames), "frame")

	if err := call.End(ctx, 42); err != nil {
		log.Fatal(err)
	}
	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	archived, err := v.List(ctx, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("archived:", slices.Equal(archived, []string{op.ID()}))
	logText, err := v.Log(ctx, op.ID(), false)
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(logText)), "\n") {
		f := strings.Fields(line) // time, [LEVEL], participant, event, ...
		fmt.Println(f[1], f[2], f[3])
	}
	// Output:
	// nightly build running 1 frame
	// archived: true
	// [INFO] builder OPERATION_CREATED
	// [INFO] builder CALL_STARTED
	// [INFO] builder CALL_ENDED
	// [INFO] builder OPERATION_COMPLETED
}
