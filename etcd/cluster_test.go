package etcd_test

import (
	"context"
	"strings"
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
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				call, err := ledger.StartCall[int](cctx, op, ledger.CallOptions[int]{Description: "step"})
				if err == nil {
					if err = call.End(cctx, 1); err != nil {
						// Not acknowledged: end it again, as a caller would.
						err = call.End(cctx, 1)
					}
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
	started, ended := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(string(log), "\n") {
		for ev, m := range map[string]map[string]int{"CALL_STARTED": started, "CALL_ENDED": ended} {
			if strings.Contains(line, ev) {
				for _, id := range strings.Fields(line) {
					if strings.HasPrefix(id, "call_") || strings.HasPrefix(id, "callId=call_") {
						m[strings.TrimPrefix(id, "callId=")]++
					}
				}
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls acknowledged, %d before the leader (member %d) stopped", len(acked), before, leader)
	for _, id := range acked {
		assert.Equal(t, 1, started[id], "CALL_STARTED of %s", id)
		assert.Equal(t, 1, ended[id], "CALL_ENDED of %s", id)
	}
	assert.NotContains(t, string(log), "CRASH", "nobody was declared crashed")
}

func must[T any](v T, _ bool) T { return v }
