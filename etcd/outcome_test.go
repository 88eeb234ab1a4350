package etcd_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger/etcd"
	"github.com/tomdist/ledger/journal"
)

// cutProxy is a TCP proxy on loopback in front of etcd that can lose
// the bytes of one direction and then cut every connection: a change
// whose request reached etcd but whose answer never came back, or whose
// request never arrived.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	lost   chan struct{} // receives when bytes are lost

	mu    sync.Mutex // guards conns, losing
	conns []net.Conn
	// losing is the direction whose bytes are lost: "answers",
	// "requests", or "" for none.
	losing string
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target, lost: make(chan struct{}, 1)}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(s, c, "requests") })
		p.wg.Go(func() { p.pipe(c, s, "answers") })
	}
}

// pipe copies src to dst, losing what goes in direction dir while p
// loses it.
func (p *cutProxy) pipe(dst, src net.Conn, dir string) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			lose := p.losing == dir
			p.mu.Unlock()
			if lose {
				select {
				case p.lost <- struct{}{}:
				default:
				}
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// lose makes p lose the bytes of direction dir from now on.
func (p *cutProxy) lose(dir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.losing = dir
}

// cut closes every connection and stops losing bytes: the client dials
// again, through p.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns, p.losing = nil, ""
}

// TestUnknownOutcome: the connection of a change breaks while the change
// is in flight, for real (a proxy between the Store and etcd loses the
// answer of the transaction after etcd applied it, or loses the request),
// so that the etcd client returns an error although the change may have
// landed. The Store sends the same transaction again and finds out from
// the head which change landed: the change is in the journal exactly
// once, and the caller is told it succeeded.
func TestUnknownOutcome(t *testing.T) {
	for _, dir := range []string{"answers", "requests"} {
		t.Run("update/lost "+dir, func(t *testing.T) { testUnknownUpdate(t, dir) })
	}
	t.Run("create/lost answers", testUnknownCreate)
	t.Run("queued update/lost answers", testUnknownQueued)
}

// cutStore returns a store on c through a new proxy, and a store on c
// reaching etcd directly.
func cutStore(t *testing.T, c etcd.Config) (*etcd.Store, *cutProxy, *etcd.Store) {
	t.Helper()
	u, err := url.Parse(cluster.Endpoints()[0])
	require.NoError(t, err)
	p := startCutProxy(t, u.Host)
	pc := c
	pc.Client = clientv3.Config{Endpoints: []string{p.addr()}, DialTimeout: 5 * time.Second}
	return openStore(t, pc), p, openStore(t, c)
}

func testUnknownUpdate(t *testing.T, dir string) {
	ctx := context.Background()
	c := config(t)
	s, p, direct := cutStore(t, c)
	first := journal.Record{Body: []byte(`{"n":1}`)}
	_, err := direct.Create(ctx, "op", journal.Change{Records: []journal.Record{first}})
	require.NoError(t, err)
	_, err = s.Read(ctx, "op", 0) // the head is now in s's cache
	require.NoError(t, err)

	p.lose(dir)
	type result struct {
		tail journal.Tail
		err  error
	}
	done := make(chan result, 1)
	go func() {
		tail, err := s.Update(ctx, "op", 1, func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: []journal.Record{{Body: []byte(`{"n":2}`)}}}, nil
		})
		done <- result{tail, err}
	}()
	if dir == "answers" {
		waitRecord(t, direct, "op", 2) // etcd applied it; its answer is lost
	} else {
		select {
		case <-p.lost:
		case <-time.After(10 * time.Second):
			t.Fatal("no request was lost in 10s")
		}
	}
	p.cut()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the update did not return 30s after the cut")
	}
	require.NoError(t, r.err, "the change landed (or was sent again), once")
	require.NotEmpty(t, r.tail.Records)
	assert.Equal(t, journal.Rev(2), r.tail.Records[len(r.tail.Records)-1].Rev)

	all, err := direct.Read(ctx, "op", 0)
	require.NoError(t, err)
	require.Len(t, all.Records, 2, "the change is in the journal once")
	assert.JSONEq(t, `{"n":2}`, string(all.Records[1].Body))
}

func testUnknownCreate(t *testing.T) {
	ctx := context.Background()
	c := config(t)
	s, p, direct := cutStore(t, c)
	require.NoError(t, s.Probe()) // connected through the proxy

	p.lose("answers")
	done := make(chan error, 1)
	go func() {
		_, err := s.Create(ctx, "op", journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}})
		done <- err
	}()
	waitRecord(t, direct, "op", 1)
	p.cut()
	select {
	case err := <-done:
		require.NoError(t, err, "the create landed, once: not ErrExists")
	case <-time.After(30 * time.Second):
		t.Fatal("the create did not return 30s after the cut")
	}
	all, err := direct.Read(ctx, "op", 0)
	require.NoError(t, err)
	assert.Len(t, all.Records, 1)
}

// waitRecord waits until the journal of id, read from s, reaches rev.
func waitRecord(t *testing.T, s *etcd.Store, id string, rev journal.Rev) {
	t.Helper()
	require.Eventually(t, func() bool {
		tail, err := s.Read(context.Background(), id, 0)
		return err == nil && tail.End(0) >= rev
	}, 10*time.Second, 5*time.Millisecond, "record %d of %s", rev, id)
}

// TestRefusedChangeIsNotUnknown: a transaction that etcd refuses (here, a
// record larger than etcd takes in one request) was not applied: the
// Update says why at once, rather than sending it again and calling its
// outcome unknown.
func TestRefusedChangeIsNotUnknown(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, config(t))
	_, err := s.Create(ctx, "op", journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}})
	require.NoError(t, err)
	big := []byte(`{"n":"` + strings.Repeat("x", 1700<<10) + `"}`)
	_, err = s.Update(ctx, "op", 1, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: big}}}, nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "too large")
	assert.NotContains(t, err.Error(), "unknown")
	tail, err := s.Read(ctx, "op", 0)
	require.NoError(t, err)
	assert.Len(t, tail.Records, 1)
}

// testUnknownQueued: an Update that lost a race joins the queue in its
// next transaction; that one lands but its answer is lost, and the copy
// sent again fails its compare, and puts the place back. The Update is
// told it succeeded, and leaves no place behind: the next change of
// anyone goes through.
func testUnknownQueued(t *testing.T) {
	ctx := context.Background()
	c := config(t)
	s, p, direct := cutStore(t, c)
	_, err := direct.Create(ctx, "op", journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}})
	require.NoError(t, err)
	_, err = s.Read(ctx, "op", 0) // s's cache: the head is at 1
	require.NoError(t, err)
	appendOne := func(after journal.Rev) {
		_, err := direct.Update(ctx, "op", after, func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: []journal.Record{{Body: []byte(`{"by":"direct"}`)}}}, nil
		})
		require.NoError(t, err)
	}
	// A race that s loses (2 lands first), so that s takes its session
	// lease while its answers come back.
	calls := 0
	_, err = s.Update(ctx, "op", 1, func(journal.Tail) (journal.Change, error) {
		if calls++; calls == 1 {
			appendOne(1)
		}
		return journal.Change{Records: []journal.Record{{Body: []byte(`{"by":"s"}`)}}}, nil
	})
	require.NoError(t, err)
	require.Equal(t, 2, calls)
	appendOne(3) // s's next first transaction loses to it

	done := make(chan error, 1)
	calls = 0
	go func() {
		_, err := s.Update(ctx, "op", 3, func(journal.Tail) (journal.Change, error) {
			if calls++; calls == 2 {
				p.lose("answers") // the answer to the transaction that joins the queue
			}
			return journal.Change{Records: []journal.Record{{Body: []byte(`{"by":"s"}`)}}}, nil
		})
		done <- err
	}()
	waitRecord(t, direct, "op", 5)
	p.cut()
	select {
	case err := <-done:
		require.NoError(t, err, "the change landed once")
	case <-time.After(30 * time.Second):
		t.Fatal("the update did not return 30s after the cut")
	}
	assert.Equal(t, 2, calls, "fn ran for the lost race and for the change")

	next, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = direct.Update(next, "op", 5, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: []byte(`{"by":"direct"}`)}}}, nil
	})
	require.NoError(t, err, "no place is left in the queue to wait for")
	all, err := direct.Read(ctx, "op", 0)
	require.NoError(t, err)
	assert.Len(t, all.Records, 6)
}
