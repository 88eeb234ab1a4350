package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Under contention the changes of an operation take turns. An Update that
// has lost a race for the head joins the operation's queue in its next
// transaction (a key under {prefix}op/{id}/queue/, bound to the Store's
// session lease, whose create revision is its place); from then on only
// the first of the queue may change the operation, and an Update that has
// not lost yet only while the queue is empty. Without turns, the writer
// that has just won (its cache of the head is exact, its next change needs
// no read) wins again and again, and the others, each learning the head
// one round trip late, can wait for tens of seconds. A queued Update that
// ends without its change leaves the queue; one whose process dies leaves
// it when its session lease expires.

// queueTTL is the TTL of the session lease that binds a Store's places in
// queues: how long the place of a dead process blocks the others at most.
const queueTTL = 2 // seconds

// place is an Update's place in its operation's queue. The zero place is
// outside the queue.
type place struct {
	key string // its key; empty outside the queue
	rev int64  // its create revision, once the key is written
}

var places atomic.Uint64

// queueKey returns the prefix of the queue of id.
func (s *Store) queueKey(id string) string { return s.opKey(id) + "queue/" }

// turnCmp returns the condition, beside the head's, of a change made from
// place q: the queue is empty, or q is the first of it.
func (s *Store) turnCmp(id string, q place) clientv3.Cmp {
	if q.rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(s.queueKey(id)), "=", 0).WithPrefix()
	}
	return clientv3.Compare(clientv3.CreateRevision(s.queueKey(id)), ">", q.rev-1).WithPrefix()
}

// join returns the operation that puts a new place for an Update of id in
// its queue, and the place, or nothing if the session lease cannot be had
// (the Update then races without a place, as without contention).
func (s *Store) join(ctx context.Context, id string) ([]clientv3.Op, place) {
	lease, err := s.session(ctx)
	if err != nil {
		return nil, place{}
	}
	key := s.queueKey(id) + strconv.FormatInt(int64(lease), 16) + "." + strconv.FormatUint(places.Add(1), 10)
	return []clientv3.Op{clientv3.OpPut(key, "", clientv3.WithLease(lease))}, place{key: key}
}

// awaitTurn waits until the place before q in the queue of id is gone.
func (s *Store) awaitTurn(ctx context.Context, id string, q place) error {
	for {
		opts := append(clientv3.WithLastCreate(), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithMaxCreateRev(q.rev-1))
		resp, err := s.cli.Get(ctx, s.queueKey(id), opts...)
		if err != nil {
			return unreachable(ctx, err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		if !s.awaitGone(ctx, string(resp.Kvs[0].Key)) {
			if ctx.Err() != nil {
				return fmt.Errorf("etcd: %w", context.Cause(ctx))
			}
			return errors.New("etcd: store closed")
		}
	}
}

// awaitGone waits until key is gone and reports whether it is; false when
// ctx ends or the store closes first. Unlike awaitDelete it watches from
// the present: a watch from a past revision is caught up by etcd's
// background sync, every 100ms, which would be the pace of the queue. It
// looks at the key once the watch is in place.
func (s *Store) awaitGone(ctx context.Context, key string) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	for ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
		for wr := range wch {
			if wr.Created {
				resp, err := s.cli.Get(ctx, key, clientv3.WithKeysOnly())
				if err == nil && len(resp.Kvs) == 0 {
					return true
				}
			}
			if len(wr.Events) > 0 {
				return true // a delete: puts are filtered out
			}
			if wr.Err() != nil {
				break
			}
		}
		if !pause(ctx, 50*time.Millisecond) {
			return false
		}
	}
	return false
}

// leave takes q out of the queue of its operation, if it is in it. What
// it cannot delete, the expiry of the session lease does.
func (s *Store) leave(ctx context.Context, q place) {
	if q.key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.cli.Delete(ctx, q.key)
}

// session returns the Store's session lease, granted at its first need
// and kept alive until the Store closes; a lease that ended is replaced.
func (s *Store) session(ctx context.Context) (clientv3.LeaseID, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.mu.Lock()
	id, closed := s.sessionID, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return 0, errors.New("etcd: store closed")
	case id != 0:
		return id, nil
	}
	g, err := s.cli.Grant(ctx, queueTTL)
	if err != nil {
		return 0, unreachable(ctx, err)
	}
	ka, err := s.cli.KeepAlive(s.life, g.ID)
	if err != nil {
		s.revoke(g.ID)
		return 0, unreachable(ctx, err)
	}
	if !s.goTracked() {
		s.revoke(g.ID)
		return 0, errors.New("etcd: store closed")
	}
	s.mu.Lock()
	s.sessionID = g.ID
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for range ka {
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.sessionID == g.ID {
			s.sessionID = 0
		}
	}()
	return g.ID, nil
}
