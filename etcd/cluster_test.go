package etcd_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
	"github.com/tomdist/ledger/etcd/embedded"
)

// TestLeaderLoss: on a cluster of three etcd members, the leader is
// stopped while two participants run calls. The operation goes on with
// the two members left: no acknowledged call is lost, none is doubled,
// and nobody is declared crashed.
func TestLeaderLoss(t *testing.T) {
	cl, err := embedded.Start(embedded.Options{Dir: t.TempDir(), Members: 3, NoFsync: true, Fast: true, LogLevel: "fatal"})
	require.NoError(t, err)
	defer cl.Close()
	c := etcd.Config{Client: clientv3.Config{Endpoints: cl.Endpoints()}, Prefix: freshPrefix(t)}
	ctx := context.Background()
	o := ledger.Options{HeartbeatInterval: 200 * time.Millisecond, StaleThreshold: 2 * time.Second}
	a := connect(t, c, "alice", o)
	opA, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "leader loss"})
	require.NoError(t, err)
	b := connect(t, c, "bob", o)
	opB, err := b.JoinOperation(ctx, opA.ID(), ledger.JoinOptions{})
	require.NoError(t, err)

	var (
		mu    sync.Mutex
		acked []string // calls whose start and end were acknowledged
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, op := range []*ledger.Operation{opA, opB} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				call, err := ledger.StartCall[int](cctx, op, ledger.CallOptions[int]{Description: "step"})
				for err == nil {
					// An end that was not acknowledged is sent again,
					// as a caller would.
					err = call.End(cctx, 1)
					if err != nil && cctx.Err() == nil && !errors.Is(err, ledger.ErrCallNotFound) && !errors.Is(err, ledger.ErrCallCompleted) {
						t.Logf("end %s: %v", call.ID(), err)
						err = nil
						time.Sleep(10 * time.Millisecond)
						continue
					}
					break
				}
				if err != nil {
					t.Logf("call: %v", err)
				}
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, call.ID())
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	require.Eventually(t, func() bool { return count() >= 20 }, 20*time.Second, 10*time.Millisecond)
	leader := cl.Leader()
	require.GreaterOrEqual(t, leader, 0)
	cl.Stop(leader)
	before := count()
	require.Eventually(t, func() bool { return count() >= before+40 }, 30*time.Second, 10*time.Millisecond,
		"calls go on after the leader's loss")
	close(stop)
	wg.Wait()

	select {
	case <-opA.Failed():
		t.Fatalf("the operation failed: %+v", must(opA.Failure()))
	default:
	}
	require.NoError(t, opB.Leave(ctx, ledger.LeaveOptions{}))
	require.NoError(t, opA.Complete(ctx))

	// Every acknowledged call is in the log, started and ended once.
	s := openStore(t, c)
	log, err := ledger.NewViewer(s).Log(ctx, opA.ID(), false)
	require.NoError(t, err)
	started, ended := callEvents(string(log))
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls acknowledged, %d before the leader (member %d) stopped", len(acked), before, leader)
	for _, id := range acked {
		assert.Equal(t, 1, started[id], "CALL_STARTED of %s", id)
		assert.Equal(t, 1, ended[id], "CALL_ENDED of %s", id)
	}
	for id, n := range started {
		assert.LessOrEqual(t, n, 1, "%s started %d times", id, n)
	}
	assert.NotContains(t, string(log), "CRASH", "nobody was declared crashed")
}

func must[T any](v T, _ bool) T { return v }
