package etcd

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger/journal"
)

// DefaultPrefix is the key prefix of a ledger when Config.Prefix and
// StoreOptions.Prefix are empty.
const DefaultPrefix = "/ledger/"

// DefaultMaxBackups is how many archived operations a Store keeps when
// StoreOptions.MaxBackups is zero (as ledger.DefaultMaxBackups).
const DefaultMaxBackups = 20

// StoreOptions configure a Store. The zero value is valid.
type StoreOptions struct {
	// Prefix is the key prefix of the ledger: several ledgers may share
	// one etcd under different prefixes. Zero means DefaultPrefix. It
	// must end in "/".
	Prefix string
	// MaxBackups is how many archived operations are kept. Zero means 20;
	// negative keeps all.
	MaxBackups int
	// Host is the name of this host in the members it holds leases for,
	// when the member names none. Zero means os.Hostname.
	Host string
}

// Store is a journal.Store over etcd (see the package doc for its layout).
// It is safe for concurrent use; any number of Stores, in any number of
// processes on any hosts, may share a prefix of one etcd cluster.
type Store struct {
	cli    *clientv3.Client
	owned  bool // Close closes cli
	prefix string
	keep   int // archived operations kept; 0 keeps all
	host   string

	// life ends when the Store closes: keep-alives, watches and
	// observers stop with it.
	life context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // goroutines of watches, observers and leases

	mu        sync.Mutex // guards heads, leases, closed, sessionID
	heads     map[string]head
	leases    map[*lease]bool
	closed    bool
	sessionID clientv3.LeaseID // the session lease (queue.go); 0 until needed

	smu sync.Mutex // held while the session lease is granted
}

// New returns a Store over the etcd client cli, which it does not close.
func New(cli *clientv3.Client, o StoreOptions) (*Store, error) {
	if cli == nil {
		return nil, errors.New("etcd: New: the client is nil")
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcd: StoreOptions.Prefix %q must end in /", prefix)
	}
	keep := o.MaxBackups
	switch {
	case keep == 0:
		keep = DefaultMaxBackups
	case keep < 0:
		keep = 0
	}
	host := o.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	life, stop := context.WithCancel(context.Background())
	return &Store{
		cli: cli, prefix: prefix, keep: keep, host: host,
		life: life, stop: stop,
		heads: make(map[string]head), leases: make(map[*lease]bool),
	}, nil
}

// Client returns the etcd client of s.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix of s.
func (s *Store) Prefix() string { return s.prefix }

// Close ends the leases held through s (revoking them, so that observers
// see their members gone at once), stops its watches and observers and,
// if s made its client (Open, Connect), closes the client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	held := make([]*lease, 0, len(s.leases))
	for l := range s.leases {
		held = append(held, l)
	}
	session := s.sessionID
	s.mu.Unlock()
	var errs []error
	for _, l := range held {
		errs = append(errs, l.Release())
	}
	if session != 0 {
		s.revoke(session) // else its places go with its TTL
	}
	s.stop()
	s.wg.Wait()
	if s.owned {
		errs = append(errs, s.cli.Close())
	}
	return errors.Join(errs...)
}

// head is the value of an operation's head key.
type head struct {
	Rev      journal.Rev `json:"rev"`
	Base     journal.Rev `json:"base,omitempty"`
	Archived bool        `json:"archived,omitempty"`
	// Tx names the change that wrote the head (see outcome.go).
	Tx string `json:"tx,omitempty"`
	// mod is the ModRevision of the head key: what a change compares.
	mod int64
}

// Keys.

func (s *Store) liveKey(id string) string    { return s.prefix + "live/" + id }
func (s *Store) archiveKey(id string) string { return s.prefix + "archive/" + id }
func (s *Store) opKey(id string) string      { return s.prefix + "op/" + id + "/" }
func (s *Store) headKey(id string) string    { return s.opKey(id) + "head" }
func (s *Store) snapKey(id string) string    { return s.opKey(id) + "snap" }
func (s *Store) recKey(id string, r journal.Rev) string {
	return s.opKey(id) + "rec/" + fmt.Sprintf("%016x", uint64(r))
}
func (s *Store) logKey(id string, r journal.Rev) string {
	return s.opKey(id) + "log/" + fmt.Sprintf("%016x", uint64(r))
}

// memberName names member m in keys: its id, pid and a hash of its host.
func memberName(m journal.Member) string {
	h := fnv.New32a()
	h.Write([]byte(m.Host))
	return fmt.Sprintf("%s.%d.%08x", m.ID, m.PID, h.Sum32())
}

// checkID refuses ids that could reach outside the operation's keys.
func checkID(what, id string) error {
	if id == "" || len(id) > 200 {
		return fmt.Errorf("etcd: invalid %s id %q", what, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c == '/' || c < ' ' || c == 0x7f {
			return fmt.Errorf("etcd: invalid %s id %q", what, id)
		}
	}
	return nil
}

func checkMember(id string, m journal.Member) error {
	if err := checkID("operation", id); err != nil {
		return err
	}
	if err := checkID("participant", m.ID); err != nil {
		return err
	}
	if m.PID <= 0 {
		return fmt.Errorf("etcd: invalid pid %d", m.PID)
	}
	return nil
}

// Record values: the record's time (Unix nanoseconds, 8 bytes big-endian)
// and its body. Log values: the record's time and its lines, as JSON.

func encodeRecord(r journal.Record) []byte {
	b := make([]byte, 8, 8+len(r.Body))
	binary.BigEndian.PutUint64(b, uint64(r.Time.UnixNano()))
	return append(b, r.Body...)
}

func decodeRecord(rev journal.Rev, v []byte) (journal.Record, error) {
	if len(v) < 8 {
		return journal.Record{}, fmt.Errorf("%w: record %d is %d bytes", journal.ErrCorrupt, rev, len(v))
	}
	t := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	return journal.Record{Rev: rev, Time: t, Body: append([]byte(nil), v[8:]...)}, nil
}

type logValue struct {
	Time  time.Time         `json:"t"`
	Lines []journal.LogLine `json:"l"`
}

// revOf returns the position at the end of a record or log key.
func revOf(key []byte) (journal.Rev, error) {
	i := strings.LastIndexByte(string(key), '/')
	n, err := strconv.ParseUint(string(key[i+1:]), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: key %q", journal.ErrCorrupt, key)
	}
	return journal.Rev(n), nil
}

// unreachable wraps an error of the etcd client: the store could not be
// reached, or the context ended (then the error is the context's cause).
func unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("etcd: %w", context.Cause(ctx))
	}
	return fmt.Errorf("etcd: cannot reach etcd: %w", err)
}

// List implements journal.Store.
func (s *Store) List(ctx context.Context, archived bool) ([]string, error) {
	p := s.prefix + "live/"
	if archived {
		p = s.prefix + "archive/"
	}
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, unreachable(ctx, err)
	}
	ids := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ids = append(ids, strings.TrimPrefix(string(kv.Key), p))
	}
	return ids, nil
}

// Create implements journal.Store.
func (s *Store) Create(ctx context.Context, id string, c journal.Change) (journal.Tail, error) {
	if err := checkID("operation", id); err != nil {
		return journal.Tail{}, err
	}
	var h head
	ops, nh, recs := s.changeOps(id, h, c)
	ops = append(ops, clientv3.OpPut(s.liveKey(id), ""))
	resp, unsure, err := s.sendTxn(ctx, func() clientv3.Txn {
		return s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.headKey(id)), "=", 0)).Then(ops...)
	})
	if err != nil {
		return journal.Tail{}, err
	}
	nh.mod = resp.Header.Revision
	if !resp.Succeeded {
		// Taken, by this change if an earlier copy landed.
		if !unsure {
			return journal.Tail{}, fmt.Errorf("%w: %s", journal.ErrExists, id)
		}
		first, err := s.created(ctx, id)
		if err != nil {
			return journal.Tail{}, err
		}
		if first.Tx != nh.Tx {
			return journal.Tail{}, fmt.Errorf("%w: %s", journal.ErrExists, id)
		}
		nh.mod = first.mod
	}
	s.remember(id, nh)
	if nh.Archived {
		s.prune(ctx)
	}
	return journal.Tail{Records: recs, Archived: nh.Archived, Source: s.opKey(id)}, nil
}

// changeOps returns the operations that append c to a journal whose head
// is h, the head after them, and the records of c with their positions
// and times set.
func (s *Store) changeOps(id string, h head, c journal.Change) ([]clientv3.Op, head, []journal.Record) {
	now := time.Now()
	nh := h
	nh.Tx = newTx()
	recs := make([]journal.Record, len(c.Records))
	var ops []clientv3.Op
	for i, r := range c.Records {
		nh.Rev++
		r.Rev = nh.Rev
		if r.Time.IsZero() {
			r.Time = now
		}
		recs[i] = r
		if c.Snapshot == nil {
			ops = append(ops, clientv3.OpPut(s.recKey(id, r.Rev), string(encodeRecord(r))))
		}
		if len(r.Log) > 0 {
			b, _ := json.Marshal(logValue{Time: r.Time, Lines: r.Log})
			ops = append(ops, clientv3.OpPut(s.logKey(id, r.Rev), string(b)))
		}
	}
	if c.Snapshot != nil {
		// The records up to the snapshot go; the new ones are never
		// written as records (etcd refuses a put and a delete of one key
		// in a transaction).
		nh.Base = nh.Rev
		ops = append(ops, clientv3.OpPut(s.snapKey(id), string(c.Snapshot)))
		if h.Rev > h.Base {
			ops = append(ops, clientv3.OpDelete(s.recKey(id, h.Base+1), clientv3.WithRange(s.recKey(id, h.Rev+1))))
		}
	}
	if c.Archive {
		nh.Archived = true
		ops = append(ops,
			clientv3.OpDelete(s.liveKey(id)),
			clientv3.OpPut(s.archiveKey(id), now.UTC().Format(time.RFC3339Nano)),
			clientv3.OpDelete(s.opKey(id)+"beat/", clientv3.WithPrefix()))
	}
	hb, _ := json.Marshal(nh)
	ops = append(ops, clientv3.OpPut(s.headKey(id), string(hb)))
	return ops, nh, recs
}

// readOps are the reads of the head of id and its records after after.
func (s *Store) readOps(id string, after journal.Rev) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(s.headKey(id)),
		clientv3.OpGet(s.recKey(id, after+1), clientv3.WithRange(s.opKey(id)+"rec0")),
	}
}

// tailOf makes the tail after position after from the answers of
// readOps (at etcd revision rev), reading the snapshot if the reader is
// behind it.
func (s *Store) tailOf(ctx context.Context, id string, after journal.Rev, rs []*etcdserverpb.ResponseOp, rev int64) (journal.Tail, head, error) {
	t := journal.Tail{Source: s.opKey(id)}
	hr := rs[0].GetResponseRange()
	if len(hr.Kvs) == 0 {
		return t, head{}, fmt.Errorf("%w: %s", journal.ErrNotFound, id)
	}
	var h head
	if err := json.Unmarshal(hr.Kvs[0].Value, &h); err != nil {
		return t, head{}, fmt.Errorf("%w: %s: head: %v", journal.ErrCorrupt, s.headKey(id), err)
	}
	h.mod = hr.Kvs[0].ModRevision
	t.Base, t.Archived = h.Base, h.Archived
	for _, kv := range rs[1].GetResponseRange().Kvs {
		r, err := revOf(kv.Key)
		if err != nil {
			return t, h, err
		}
		if r <= after || r <= h.Base {
			continue
		}
		rec, err := decodeRecord(r, kv.Value)
		if err != nil {
			return t, h, err
		}
		t.Records = append(t.Records, rec)
	}
	if after < h.Base {
		resp, err := s.cli.Get(ctx, s.snapKey(id), clientv3.WithRev(rev))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return t, h, errCompacted
		}
		if err != nil {
			return t, h, unreachable(ctx, err)
		}
		if len(resp.Kvs) == 0 {
			return t, h, fmt.Errorf("%w: %s: no snapshot at %d", journal.ErrCorrupt, s.snapKey(id), h.Base)
		}
		t.Snapshot = resp.Kvs[0].Value
	}
	if n := len(t.Records); n > 0 && t.Records[n-1].Rev != h.Rev || n == 0 && max(after, h.Base) < h.Rev {
		return t, h, fmt.Errorf("%w: %s: records end before the head (%d)", journal.ErrCorrupt, s.opKey(id), h.Rev)
	}
	return t, h, nil
}

// Read implements journal.Store.
func (s *Store) Read(ctx context.Context, id string, after journal.Rev) (journal.Tail, error) {
	if err := checkID("operation", id); err != nil {
		return journal.Tail{}, err
	}
	t, _, err := s.read(ctx, id, after)
	return t, err
}

var errCompacted = errors.New("etcd: revision compacted")

// Update implements journal.Store.
func (s *Store) Update(ctx context.Context, id string, after journal.Rev, fn func(journal.Tail) (journal.Change, error)) (journal.Tail, error) {
	if err := checkID("operation", id); err != nil {
		return journal.Tail{}, err
	}
	// Where the cache says the caller is at the head, try without a read:
	// the transaction's compare proves or refutes it.
	t, h, known := journal.Tail{Source: s.opKey(id)}, head{}, false
	if c, ok := s.cached(id); ok && c.Rev == after && !c.Archived {
		t.Base, h = c.Base, c
	} else {
		var err error
		if t, h, err = s.read(ctx, id, after); err != nil {
			return t, err
		}
		known = true
	}
	var (
		q     place // the Update's place in the queue, once it lost a race
		raced bool  // it lost a race
	)
	defer func() { s.leave(ctx, q) }()
	for {
		if h.Archived {
			return t, fmt.Errorf("%w: %s", journal.ErrArchived, id)
		}
		c, err := fn(t)
		if (err != nil || isZero(c)) && !known {
			// Decided on the cache: make sure of the head first.
			if t, h, err = s.read(ctx, id, after); err != nil {
				return t, err
			}
			known = true
			continue
		}
		if err != nil {
			return t, err
		}
		if isZero(c) {
			return t, nil
		}
		ops, nh, recs := s.changeOps(id, h, c)
		resp, unsure, err := s.sendTxn(ctx, s.commit(ctx, id, after, h, ops, &q, raced))
		if err != nil {
			s.forget(id)
			return t, err
		}
		nh.mod = resp.Header.Revision
		if !resp.Succeeded && unsure {
			// An earlier copy, whose answer was lost, may have landed.
			f, err := s.followed(ctx, id, h.mod)
			if err != nil {
				s.forget(id)
				return t, err
			}
			resp.Succeeded, nh.mod = f.Tx == nh.Tx, f.mod
		}
		if resp.Succeeded {
			if !unsure {
				q = place{} // the transaction took it out of the queue
			} // else a later copy may have put it back: leave deletes it
			s.remember(id, nh)
			if nh.Archived {
				s.prune(ctx)
			}
			t.Records = append(t.Records, recs...)
			t.Archived = nh.Archived
			return t, nil
		}
		// Lost the race: the else branch read the new tail.
		if t, h, err = s.lost(ctx, id, after, resp, &q); err != nil {
			return t, err
		}
		known, raced = true, true
	}
}

// commit returns the transaction of a change from place q (each call a
// copy of the same): ops if the head is still h and it is q's turn, else
// the reads of the tail after after and of the first of the queue, and,
// for a change outside the queue that lost a race, a place in it, read
// back.
func (s *Store) commit(ctx context.Context, id string, after journal.Rev, h head, ops []clientv3.Op, q *place, lost bool) func() clientv3.Txn {
	els := s.readOps(id, after)
	if q.key == "" && lost {
		var put []clientv3.Op
		put, *q = s.join(ctx, id)
		els = append(els, put...)
		if q.key != "" {
			els = append(els, clientv3.OpGet(q.key, clientv3.WithKeysOnly()))
		}
	} else if q.key != "" {
		ops = append(ops, clientv3.OpDelete(q.key))
	}
	els = append(els, clientv3.OpGet(s.queueKey(id), append(clientv3.WithFirstCreate(), clientv3.WithPrefix(), clientv3.WithKeysOnly())...))
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.headKey(id)), "=", h.mod), s.turnCmp(id, *q)}
	return func() clientv3.Txn { return s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(els...) }
}

// lost returns the tail after after and the head, once it is the turn of
// the Update at place q, which lost the race of resp.
func (s *Store) lost(ctx context.Context, id string, after journal.Rev, resp *clientv3.TxnResponse, q *place) (journal.Tail, head, error) {
	rs := resp.Responses
	if q.key != "" && q.rev == 0 {
		// The transaction put the place, and read it back.
		if kvs := rs[len(rs)-2].GetResponseRange().Kvs; len(kvs) > 0 {
			q.rev = kvs[0].CreateRevision
		} else {
			*q = place{} // its lease ended at once: race without one
		}
	}
	t, h, err := s.tailOf(ctx, id, after, resp.Responses, resp.Header.Revision)
	if errors.Is(err, errCompacted) {
		t, h, err = s.read(ctx, id, after)
	}
	if err != nil {
		return t, h, err
	}
	s.remember(id, h)
	first := rs[len(rs)-1].GetResponseRange().Kvs
	if q.key == "" || len(first) > 0 && string(first[0].Key) == q.key {
		return t, h, nil // no place, or the first: the tail is current
	}
	if err := s.awaitTurn(ctx, id, *q); err != nil {
		return t, h, err
	}
	return s.read(ctx, id, after)
}

// read is Read that also returns the head.
func (s *Store) read(ctx context.Context, id string, after journal.Rev) (journal.Tail, head, error) {
	for {
		resp, err := s.cli.Txn(ctx).Then(s.readOps(id, after)...).Commit()
		if err != nil {
			return journal.Tail{}, head{}, unreachable(ctx, err)
		}
		t, h, err := s.tailOf(ctx, id, after, resp.Responses, resp.Header.Revision)
		if errors.Is(err, errCompacted) {
			continue
		}
		if err == nil {
			s.remember(id, h)
		}
		return t, h, err
	}
}

func isZero(c journal.Change) bool {
	return len(c.Records) == 0 && c.Snapshot == nil && !c.Archive
}

// maxHeads bounds the cache of heads.
const maxHeads = 4096

// remember caches the head of id as last seen by this Store.
func (s *Store) remember(id string, h head) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heads) >= maxHeads {
		clear(s.heads)
	}
	if h.Archived {
		delete(s.heads, id)
		return
	}
	if c, ok := s.heads[id]; !ok || c.mod < h.mod {
		s.heads[id] = h
	}
}

func (s *Store) cached(id string) (head, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.heads[id]
	return h, ok
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.heads, id)
}

// ReadLog implements journal.Store.
func (s *Store) ReadLog(ctx context.Context, id string, debug bool) ([]byte, error) {
	if err := checkID("operation", id); err != nil {
		return nil, err
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.headKey(id), clientv3.WithKeysOnly()),
		clientv3.OpGet(s.opKey(id)+"log/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, unreachable(ctx, err)
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
		return nil, fmt.Errorf("%w: %s", journal.ErrNotFound, id)
	}
	var out []byte
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var lv logValue
		if err := json.Unmarshal(kv.Value, &lv); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", journal.ErrCorrupt, kv.Key, err)
		}
		for _, l := range lv.Lines {
			if (l.Level == "DEBUG") != debug {
				continue
			}
			l.Message = oneLine(l.Message)
			out = append(out, journal.FormatLogLine(lv.Time, l)...)
			out = append(out, '\n')
		}
	}
	return out, nil
}

// oneLine keeps a message on one log line.
func oneLine(msg string) string {
	if !strings.ContainsAny(msg, "\r\n") {
		return msg
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(msg)
}

// prune deletes the oldest archived operations beyond the bound. It is
// housekeeping: what it cannot do, the next archive tries again.
func (s *Store) prune(ctx context.Context) {
	if s.keep <= 0 {
		return
	}
	p := s.prefix + "archive/"
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil || len(resp.Kvs) <= s.keep {
		return
	}
	for _, kv := range resp.Kvs[:len(resp.Kvs)-s.keep] {
		id := strings.TrimPrefix(string(kv.Key), p)
		s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(string(kv.Key)), "=", kv.CreateRevision)).
			Then(clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(s.opKey(id), clientv3.WithPrefix())).
			Commit()
	}
}

// Prune deletes the oldest archived operations beyond keep and returns
// how many it deleted and kept (the ledger command's prune).
func (s *Store) Prune(keep int) (removed, kept int, err error) {
	ctx, cancel := context.WithTimeout(s.life, time.Minute)
	defer cancel()
	p := s.prefix + "archive/"
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return 0, 0, unreachable(ctx, err)
	}
	if keep < 0 || len(resp.Kvs) <= keep {
		return 0, len(resp.Kvs), nil
	}
	for _, kv := range resp.Kvs[:len(resp.Kvs)-keep] {
		id := strings.TrimPrefix(string(kv.Key), p)
		_, err := s.cli.Txn(ctx).
			Then(clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(s.opKey(id), clientv3.WithPrefix())).
			Commit()
		if err != nil {
			return removed, len(resp.Kvs) - removed, unreachable(ctx, err)
		}
		removed++
	}
	return removed, keep, nil
}

// Probe checks that etcd answers (the ledger server's /health).
func (s *Store) Probe() error {
	ctx, cancel := context.WithTimeout(s.life, 5*time.Second)
	defer cancel()
	_, err := s.cli.Get(ctx, s.prefix+"live/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return unreachable(ctx, err)
	}
	return nil
}
