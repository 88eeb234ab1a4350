package etcd_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestSixteenParticipantsOneOperation: sixteen participants, each a
// ledger with a connection of its own, make calls on one operation at
// once, every change of each one racing the others' for the head. They
// take turns: while one call is started and ended, the others complete a
// bounded number of calls (each one change ahead in the queue, twice,
// and a change before it joined; without turns a writer that has just
// won keeps winning and the others wait for hundreds of calls).
// Every acknowledged call is in the log, started and ended exactly once,
// and nobody is declared crashed.
func TestSixteenParticipantsOneOperation(t *testing.T) {
	const participants, calls = 16, 12
	c := config(t)
	ctx := context.Background()
	o := ledger.Options{HeartbeatInterval: 500 * time.Millisecond, StaleThreshold: 5 * time.Second}
	ops := make([]*ledger.Operation, participants)
	for i := range participants {
		l := connect(t, c, fmt.Sprintf("p%02d", i), o)
		var err error
		if i == 0 {
			ops[i], err = l.CreateOperation(ctx, ledger.CreateOptions{Description: "sixteen"})
		} else {
			ops[i], err = l.JoinOperation(ctx, ops[0].ID(), ledger.JoinOptions{})
		}
		require.NoError(t, err)
	}

	var (
		mu    sync.Mutex
		acked []string // calls whose start and end were acknowledged
		errs  []error
		most  int // the most calls completed during one call
	)
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Go(func() {
			for range calls {
				mu.Lock()
				before := len(acked)
				mu.Unlock()
				id, err := stepWithin(ctx, op, time.Minute)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					most = max(most, len(acked)-before)
					acked = append(acked, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs, "every call is acknowledged within its deadline")
	require.Len(t, acked, participants*calls)
	t.Logf("at most %d calls were completed while one was made", most)
	assert.LessOrEqual(t, most, 4*participants, "calls completed by others while one was made")
	select {
	case <-ops[0].Failed():
		t.Fatalf("the operation failed: %+v", must(ops[0].Failure()))
	default:
	}
	for _, op := range ops[1:] {
		require.NoError(t, op.Leave(ctx, ledger.LeaveOptions{}))
	}
	require.NoError(t, ops[0].Complete(ctx))

	log, err := ledger.NewViewer(openStore(t, c)).Log(ctx, ops[0].ID(), false)
	require.NoError(t, err)
	started, ended := callEvents(string(log))
	assert.Len(t, started, participants*calls, "calls started")
	for _, id := range acked {
		assert.Equal(t, 1, started[id], "CALL_STARTED of %s", id)
		assert.Equal(t, 1, ended[id], "CALL_ENDED of %s", id)
	}
	assert.NotContains(t, string(log), "CRASH", "nobody was declared crashed")
}

// stepWithin starts and ends one call on op within d and returns its id.
func stepWithin(ctx context.Context, op *ledger.Operation, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "step"})
	if err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	if err := call.End(ctx, 1); err != nil {
		return call.ID(), fmt.Errorf("end %s: %w", call.ID(), err)
	}
	return call.ID(), nil
}
