package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// hbErrors collects the heartbeat errors delivered to a session.
type hbErrors struct {
	mu   sync.Mutex
	errs []*ledger.HeartbeatError
}

func (h *hbErrors) callback() ledger.OperationCallback {
	return ledger.OperationCallback{OnHeartbeatError: func(_ *ledger.Operation, err *ledger.HeartbeatError) {
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
	}}
}

func (h *hbErrors) has(t ledger.HeartbeatErrorType) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.errs {
		if e.Type == t {
			return true
		}
	}
	return false
}

func TestHeartbeatErrorTypes(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		want   ledger.HeartbeatErrorType
		break_ func(t *testing.T, dir, id string)
	}{
		{"ledgerNotFound", ledger.HeartbeatLedgerNotFound, func(t *testing.T, dir, id string) {
			require.NoError(t, os.Remove(filepath.Join(dir, id+".operation.journal")))
		}},
		{"ioError", ledger.HeartbeatIOError, func(t *testing.T, dir, id string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, id+".operation.journal"), []byte("{not json"), 0o644))
		}},
		// No lockFailed: a heartbeat takes no lock of the operation (its
		// lease and the store's beat prove it alive), so a held lock
		// cannot fail it.
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := &env{t: t, dir: e.dir, url: e.url, remote: e.remote, open: e.open}
				var h hbErrors
				l := e.Open("p", ledger.Options{})
				op, err := l.CreateOperation(ctx, ledger.CreateOptions{Callback: h.callback()})
				require.NoError(t, err)
				tc.break_(t, e.dir, op.ID())
				_, err = op.Heartbeat(ctx)
				require.IsTypef(t, &ledger.HeartbeatError{}, err, "Heartbeat: %v", err)
				assert.Equal(t, tc.want, err.(*ledger.HeartbeatError).Type, "HeartbeatError type")
				waitFor(t, 5*time.Second, tc.name+" delivered to OnHeartbeatError", func() bool { return h.has(tc.want) })
			})
		}
	})
}

func TestHeartbeatStaleReported(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		var h hbErrors
		a := e.Open("watcher", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Callback: h.callback()})
		require.NoError(t, err)
		b := e.Open("hung", ledger.Options{})
		hung, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		_, err = ledger.StartCall[int](ctx, hung, ledger.CallOptions[int]{Contained: true})
		require.NoError(t, err)
		hung.StopHeartbeat()
		waitFor(t, 10*time.Second, "heartbeatStale", func() bool { return h.has(ledger.HeartbeatStale) })
		waitFor(t, 10*time.Second, "the hung participant declared crashed", func() bool {
			d, err := op.State(ctx)
			require.NoError(t, err)
			return d.Participants[1].State == "crashed" && len(d.CallFrames) == 0
		})
		select {
		case <-op.Failed():
			require.Fail(t, "a contained call's crash failed the operation")
		default:
		}
	})
}

func TestManualHeartbeatResult(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("a", ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		b := e.Open("b", ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
		joined, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		_, err = ledger.StartCall[int](ctx, joined, ledger.CallOptions[int]{})
		require.NoError(t, err)
		require.NoError(t, op.RegisterTempResource(ctx, filepath.Join(t.TempDir(), "x")))
		r, err := op.Heartbeat(ctx)
		require.NoError(t, err)
		assert.True(t, r.LedgerExists, "LedgerExists")
		assert.False(t, r.AbortFlag, "AbortFlag")
		assert.Equal(t, 1, r.CallFrameCount, "CallFrameCount")
		assert.Equal(t, 1, r.TempResourceCount, "TempResourceCount")
		assert.Len(t, r.Participants, 2, "Participants")
		assert.Len(t, r.ParticipantAges, 2, "ParticipantAges")
		assert.Empty(t, r.StaleParticipants, "StaleParticipants")
		assert.NotNil(t, r.DataBefore, "DataBefore")
		require.NotNil(t, r.DataAfter, "DataAfter")
		before := r.DataAfter.Participants[0].LastHeartbeat
		r2, err := op.Heartbeat(ctx)
		require.NoError(t, err)
		assert.Positive(t, r2.HeartbeatAge, "HeartbeatAge of the second beat")
		assert.False(t, r2.DataAfter.Participants[0].LastHeartbeat.Before(before), "the second beat went back in time")
	})
}

func TestSlowCallbackDoesNotDelayBeats(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		release := make(chan struct{})
		var once sync.Once
		a := e.Open("slow", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
			OnHeartbeatSuccess: func(*ledger.Operation, ledger.HeartbeatResult) { <-release },
		}})
		require.NoError(t, err)
		defer once.Do(func() { close(release) })
		first := op.CachedData().Participants[0].LastHeartbeat
		// The first callback blocks forever; the heartbeat must go on.
		var beats int
		last := first
		waitFor(t, 10*time.Second, "five more heartbeats while a callback blocks", func() bool {
			d, err := op.State(ctx)
			require.NoError(t, err)
			if hb := d.Participants[0].LastHeartbeat; hb.After(last) {
				beats++
				last = hb
			}
			return beats >= 5
		})
		once.Do(func() { close(release) })
	})
}

func TestCallFailureReachesOtherProcess(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		s := &survivor{}
		l := e.Open("init", ledger.Options{StaleThreshold: 30 * time.Second})
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{Callback: ledger.OperationCallback{
			OnFailure: func(*ledger.Operation, ledger.OperationFailedInfo) { s.onFailure.Add(1) },
		}})
		require.NoError(t, err)
		_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnOperationFailed: func(ledger.OperationFailedInfo) { s.opFailed.Add(1) },
		}})
		require.NoError(t, err)
		p := startParticipant(t, e, op.ID(), "failer", "CALLS=1", "FAIL=1", "STALE=30s")
		_, err = p.stdin.Write([]byte("fail\n"))
		require.NoError(t, err)
		require.Equal(t, "failed", p.readLine(t), "the child's answer")
		waitClosed(t, op.Failed(), 10*time.Second, "Failed() after another process's call failed")
		info, _ := op.Failure()
		assert.Equal(t, "failer", info.ParticipantID, "failure info")
		assert.Equal(t, []string{p.ready.Calls[0]}, info.CrashedCallIDs, "failure info")
		waitFor(t, 5*time.Second, "callbacks", func() bool { return s.onFailure.Load() == 1 && s.opFailed.Load() == 1 })
		d := archived(t, e.dir, op.ID())
		assert.Equal(t, "failed", d.OperationState, "archived state")
		assert.False(t, d.RemovalTimestamp.IsZero(), "no removal timestamp")
	})
}

func TestLastLeaveStopsHeartbeat(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("stay", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		b := e.Open("go", ledger.Options{})
		s1, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		s2, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		require.Equal(t, 1, s1.SessionID(), "first session id")
		require.Equal(t, 2, s2.SessionID(), "second session id")
		require.NoError(t, s1.Leave(ctx, ledger.LeaveOptions{}))
		require.NoError(t, s2.Leave(ctx, ledger.LeaveOptions{}))
		left := func() ledger.Participant {
			d, err := op.State(ctx)
			require.NoError(t, err)
			return d.Participants[1]
		}
		p := left()
		require.Equal(t, "left", p.State, "participant state after the last Leave")
		// Five automatic beats of the one that stayed (about five of the
		// left one's intervals) later, the left one's heartbeat has not moved.
		beats, last := 0, op.CachedData().Participants[0].LastHeartbeat
		waitFor(t, 10*time.Second, "five beats of the participant that stayed", func() bool {
			d, err := op.State(ctx)
			require.NoError(t, err)
			if hb := d.Participants[0].LastHeartbeat; hb.After(last) {
				beats, last = beats+1, hb
			}
			return beats >= 5
		})
		got := left()
		assert.Truef(t, got.LastHeartbeat.Equal(p.LastHeartbeat), "left participant still beating: %v -> %v", p.LastHeartbeat, got.LastHeartbeat)
		assert.Equal(t, "left", got.State, "participant state")
	})
}

func TestCloseSettlesOpenSessions(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		o := ledger.Options{StaleThreshold: 30 * time.Second} // no verdict by staleness
		a := e.Open("watcher", o)
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		idle := e.Open("idle", o)
		_, err = idle.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		busy := e.Open("busy", o)
		b, err := busy.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		_, err = ledger.StartCall[int](ctx, b, ledger.CallOptions[int]{})
		require.NoError(t, err)

		require.NoError(t, idle.Close())
		d, err := op.State(ctx)
		require.NoError(t, err)
		require.Equal(t, "left", d.Participants[1].State, "participant after Close of an idle participant")
		require.Equal(t, "running", d.OperationState, "operation after Close of an idle participant")

		// Closing with a call never ended abandons it: a crash, seen at once.
		require.NoError(t, busy.Close())
		waitClosed(t, op.Failed(), 10*time.Second, "Failed() after Close abandoned a call")
	})
}
