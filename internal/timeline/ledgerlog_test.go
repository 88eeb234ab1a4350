package timeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/timeline"
)

// TestParseLedgerLog reads the log a ledger really writes: a call that
// ended, a spawned call that completed, a contained call that failed and
// one that runs, then the same operation completed.
func TestParseLedgerLog(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "real"})
	require.NoError(t, err)
	c1, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "first step"})
	require.NoError(t, err)
	require.NoError(t, c1.End(ctx, 1))
	s := ledger.SpawnCall(op, func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 2, nil }, ledger.CallOptions[int]{Description: "spawned"})
	_, err = s.Wait(ctx)
	require.NoError(t, err)
	c3, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "fragile", Contained: true})
	require.NoError(t, err)
	require.NoError(t, c3.Fail(ctx, errors.New("disk full")))
	c4, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "last"})
	require.NoError(t, err)

	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	log, err := v.Log(ctx, op.ID(), false)
	require.NoError(t, err)
	tl := timeline.Parse(op.ID(), log, time.Now())
	require.Len(t, tl.Lanes, 1)
	bars := tl.Lanes[0].Bars
	require.Len(t, bars, 4, "%s", log)
	for i, w := range []struct {
		id     string
		status timeline.Status
		desc   string
	}{
		{c1.ID(), timeline.Ended, "first step"},
		{s.ID(), timeline.Ended, "spawned"},
		{c3.ID(), timeline.Failed, "fragile"},
		{c4.ID(), timeline.Running, "last"},
	} {
		assert.Equal(t, w.id, bars[i].CallID)
		assert.Equal(t, w.status, bars[i].Status, w.id)
		assert.Equal(t, w.desc, bars[i].Description, w.id)
	}
	assert.True(t, bars[1].Spawned)
	assert.Contains(t, bars[2].Reason, "disk full")

	require.NoError(t, c4.End(ctx, 4))
	require.NoError(t, op.Complete(ctx))
	log, err = v.Log(ctx, op.ID(), false)
	require.NoError(t, err)
	tl = timeline.Parse(op.ID(), log, time.Now().Add(time.Hour))
	assert.Equal(t, "completed", tl.Outcome)
	assert.Equal(t, timeline.Ended, tl.Lanes[0].Bars[3].Status)
	assert.True(t, tl.End.Before(time.Now().Add(time.Minute)), "an archived operation ends with its log")
}
