package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger/journal"
)

// DefaultTTL is the TTL of the lease of a member that names none.
const DefaultTTL = 15 * time.Second

// memberValue is the value of a member or beat key.
type memberValue struct {
	ID    string    `json:"participantId"`
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	TTLms int64     `json:"ttlMs,omitempty"`
	Beat  time.Time `json:"beat"`
}

func memberJSON(m journal.Member, beat time.Time) string {
	b, _ := json.Marshal(memberValue{ID: m.ID, PID: m.PID, Host: m.Host, TTLms: m.TTL.Milliseconds(), Beat: beat})
	return string(b)
}

func (s *Store) memberKey(id string, m journal.Member) string {
	return s.opKey(id) + "member/" + memberName(m)
}

func (s *Store) beatKey(id string, m journal.Member) string {
	return s.opKey(id) + "beat/" + memberName(m)
}

// ttlSeconds is the TTL of a lease for m: its own, rounded up to whole
// seconds, as etcd counts them.
func ttlSeconds(m journal.Member) int64 {
	ttl := m.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return max(1, int64(math.Ceil(ttl.Seconds())))
}

// lease is a member's etcd lease, kept alive by the etcd client until it
// is released or the Store closes.
type lease struct {
	s    *Store
	id   clientv3.LeaseID
	key  string
	m    journal.Member
	stop context.CancelFunc // ends the keep-alive
	done chan struct{}      // closed when the keep-alive has ended

	mu       sync.Mutex // guards released
	released bool
}

// Hold implements journal.Store: a lease with the member's TTL, kept
// alive by the client, and the member's key bound to it.
func (s *Store) Hold(ctx context.Context, id string, m journal.Member) (journal.Lease, error) {
	if err := checkMember(id, m); err != nil {
		return nil, err
	}
	if m.Host == "" {
		m.Host = s.host
	}
	g, err := s.cli.Grant(ctx, ttlSeconds(m))
	if err != nil {
		return nil, unreachable(ctx, err)
	}
	key := s.memberKey(id, m)
	if _, err := s.cli.Put(ctx, key, memberJSON(m, time.Now()), clientv3.WithLease(g.ID)); err != nil {
		s.revoke(g.ID)
		return nil, unreachable(ctx, err)
	}
	kctx, stop := context.WithCancel(s.life)
	ka, err := s.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		stop()
		s.revoke(g.ID)
		return nil, unreachable(ctx, err)
	}
	l := &lease{s: s, id: g.ID, key: key, m: m, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stop()
		s.revoke(g.ID)
		return nil, errors.New("etcd: store closed")
	}
	s.leases[l] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer close(l.done)
		for range ka {
		}
	}()
	return l, nil
}

// revoke ends a lease at once, as far as etcd can be reached soon.
func (s *Store) revoke(id clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.cli.Revoke(ctx, id)
	return err
}

// Beat implements journal.Lease: the member key, still bound to the
// lease, gets the time of the beat. A lease that ended (its process was
// cut off from etcd for longer than its TTL, or its operation was
// pruned) is an error: the member is gone for the others.
func (l *lease) Beat(ctx context.Context) error {
	resp, err := l.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(l.key), "=", l.id)).
		Then(clientv3.OpPut(l.key, memberJSON(l.m, time.Now()), clientv3.WithLease(l.id))).
		Commit()
	if err != nil {
		return unreachable(ctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd: the lease of %s ended", l.m.Key())
	}
	return nil
}

// Release implements journal.Lease: the lease is revoked, which deletes
// the member key.
func (l *lease) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	l.released = true
	l.stop()
	<-l.done
	l.s.mu.Lock()
	delete(l.s.leases, l)
	l.s.mu.Unlock()
	if err := l.s.revoke(l.id); err != nil {
		return fmt.Errorf("etcd: revoke the lease of %s (it ends with its TTL): %w", l.m.Key(), err)
	}
	return nil
}

// Beat implements journal.Store: the beat of a member without a lease
// here, recorded while the operation is live.
func (s *Store) Beat(ctx context.Context, id string, m journal.Member) error {
	if err := checkMember(id, m); err != nil {
		return err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.liveKey(id)), ">", 0)).
		Then(clientv3.OpPut(s.beatKey(id, m), memberJSON(m, time.Now()))).
		Else(clientv3.OpGet(s.headKey(id), clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return unreachable(ctx, err)
	}
	if resp.Succeeded {
		return nil
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
		return fmt.Errorf("%w: %s", journal.ErrArchived, id)
	}
	return fmt.Errorf("%w: %s", journal.ErrNotFound, id)
}

// Vitals implements journal.Store: members with a key bound to a lease
// hold it; an ended lease leaves nothing (its member is not listed).
func (s *Store) Vitals(ctx context.Context, id string) ([]journal.Vital, error) {
	if err := checkID("operation", id); err != nil {
		return nil, err
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.opKey(id)+"member/", clientv3.WithPrefix()),
		clientv3.OpGet(s.opKey(id)+"beat/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, unreachable(ctx, err)
	}
	var vs []journal.Vital
	for i, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			var mv memberValue
			if json.Unmarshal(kv.Value, &mv) != nil || mv.ID == "" {
				continue
			}
			m := journal.Member{ID: mv.ID, PID: mv.PID, Host: mv.Host, TTL: time.Duration(mv.TTLms) * time.Millisecond}
			vs = append(vs, journal.Vital{Member: m, Lease: i == 0, Held: i == 0, Beat: mv.Beat})
		}
	}
	return vs, nil
}

// Observe implements journal.Store: a watch of the member's key, which
// etcd deletes when its lease ends. Members of every host are observable.
func (s *Store) Observe(ctx context.Context, id string, m journal.Member) (<-chan struct{}, error) {
	if err := checkMember(id, m); err != nil {
		return nil, err
	}
	if m.Host == "" {
		m.Host = s.host // as Hold names it
	}
	key := s.memberKey(id, m)
	resp, err := s.cli.Get(ctx, key, clientv3.WithKeysOnly())
	if err != nil {
		return nil, unreachable(ctx, err)
	}
	gone := make(chan struct{})
	if len(resp.Kvs) == 0 {
		close(gone)
		return gone, nil
	}
	if !s.goTracked() {
		return nil, errors.New("etcd: store closed")
	}
	go func() {
		defer s.wg.Done()
		if s.awaitDelete(ctx, key, resp.Header.Revision) {
			close(gone)
		}
	}()
	return gone, nil
}

// goTracked counts a goroutine that Close waits for, unless s is closed.
func (s *Store) goTracked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// awaitDelete waits until key is deleted after etcd revision rev and
// reports whether it was; false when ctx ends or the store closes first.
// A watch that breaks (a compacted revision, a lost leader) is opened
// again after reading the key.
func (s *Store) awaitDelete(ctx context.Context, key string, rev int64) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	for ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev+1), clientv3.WithFilterPut())
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return true
				}
			}
			if wr.Err() != nil {
				break
			}
		}
		if !pause(ctx, 50*time.Millisecond) {
			return false
		}
		resp, err := s.cli.Get(ctx, key, clientv3.WithKeysOnly())
		if err != nil {
			continue
		}
		if len(resp.Kvs) == 0 {
			return true
		}
		rev = resp.Header.Revision
	}
	return false
}

// pause waits for d or the end of ctx, and reports whether ctx is live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
