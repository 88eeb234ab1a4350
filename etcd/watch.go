package etcd

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch implements journal.Store: a watch of the operation's head key,
// which every append, snapshot and archive rewrites. It starts after the
// cluster's revision when Watch is called, so that every change made
// once Watch has returned wakes the channel, however late its goroutine
// reaches etcd. A watch that breaks (etcd lost its leader, the client
// moved to another member, a compacted revision) is opened again, and a
// wake-up is sent, as a change may have been missed meanwhile.
func (s *Store) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := checkID("operation", id); err != nil {
		return nil, err
	}
	if !s.goTracked() {
		return nil, errors.New("etcd: store closed")
	}
	now, err := s.cli.Get(ctx, s.headKey(id), clientv3.WithCountOnly())
	if err != nil {
		s.wg.Done()
		return nil, err
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer s.wg.Done()
		defer close(ch)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.life, cancel)()
		s.follow(wctx, s.headKey(id), now.Header.Revision, ch)
	}()
	return ch, nil
}

// follow wakes ch at every change of key after revision rev until ctx
// ends.
func (s *Store) follow(ctx context.Context, key string, rev int64, ch chan<- struct{}) {
	wake := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		var opts []clientv3.OpOption
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev+1))
		}
		for wr := range s.cli.Watch(clientv3.WithRequireLeader(ctx), key, opts...) {
			if wr.CompactRevision != 0 {
				rev = 0
			}
			for _, ev := range wr.Events {
				rev = max(rev, ev.Kv.ModRevision)
			}
			if len(wr.Events) > 0 {
				wake()
			}
			if wr.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		wake()
		if !pause(ctx, 50*time.Millisecond) {
			return
		}
	}
}
