package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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
			if err := os.Remove(filepath.Join(dir, id+".operation.journal")); err != nil {
				t.Fatal(err)
			}
		}},
		{"ioError", ledger.HeartbeatIOError, func(t *testing.T, dir, id string) {
			if err := os.WriteFile(filepath.Join(dir, id+".operation.journal"), []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
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
				if err != nil {
					t.Fatal(err)
				}
				tc.break_(t, e.dir, op.ID())
				_, err = op.Heartbeat(ctx)
				var he *ledger.HeartbeatError
				if !asHeartbeatError(err, &he) || he.Type != tc.want {
					t.Fatalf("Heartbeat: %v, want a %v HeartbeatError", err, tc.want)
				}
				waitFor(t, 5*time.Second, tc.name+" delivered to OnHeartbeatError", func() bool { return h.has(tc.want) })
			})
		}
	})
}

func asHeartbeatError(err error, target **ledger.HeartbeatError) bool {
	he, ok := err.(*ledger.HeartbeatError)
	if ok {
		*target = he
	}
	return ok
}

func TestHeartbeatStaleReported(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		var h hbErrors
		a := e.Open("watcher", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Callback: h.callback()})
		if err != nil {
			t.Fatal(err)
		}
		b := e.Open("hung", ledger.Options{})
		hung, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.StartCall[int](ctx, hung, ledger.CallOptions[int]{Contained: true}); err != nil {
			t.Fatal(err)
		}
		hung.StopHeartbeat()
		waitFor(t, 10*time.Second, "heartbeatStale", func() bool { return h.has(ledger.HeartbeatStale) })
		waitFor(t, 10*time.Second, "the hung participant declared crashed", func() bool {
			d, err := op.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return d.Participants[1].State == "crashed" && len(d.CallFrames) == 0
		})
		select {
		case <-op.Failed():
			t.Fatal("a contained call's crash failed the operation")
		default:
		}
	})
}

func TestManualHeartbeatResult(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("a", ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b := e.Open("b", ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
		joined, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.StartCall[int](ctx, joined, ledger.CallOptions[int]{}); err != nil {
			t.Fatal(err)
		}
		if err := op.RegisterTempResource(ctx, filepath.Join(t.TempDir(), "x")); err != nil {
			t.Fatal(err)
		}
		r, err := op.Heartbeat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.LedgerExists || r.AbortFlag || r.CallFrameCount != 1 || r.TempResourceCount != 1 ||
			len(r.Participants) != 2 || len(r.ParticipantAges) != 2 || len(r.StaleParticipants) != 0 ||
			r.DataBefore == nil || r.DataAfter == nil {
			t.Fatalf("heartbeat result %+v", r)
		}
		before := r.DataAfter.Participants[0].LastHeartbeat
		r2, err := op.Heartbeat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r2.HeartbeatAge <= 0 || r2.DataAfter.Participants[0].LastHeartbeat.Before(before) {
			t.Fatalf("second beat %+v", r2)
		}
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
		if err != nil {
			t.Fatal(err)
		}
		defer once.Do(func() { close(release) })
		first := op.CachedData().Participants[0].LastHeartbeat
		// The first callback blocks forever; the heartbeat must go on.
		var beats int
		last := first
		waitFor(t, 10*time.Second, "five more heartbeats while a callback blocks", func() bool {
			d, err := op.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
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
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
			OnOperationFailed: func(ledger.OperationFailedInfo) { s.opFailed.Add(1) },
		}}); err != nil {
			t.Fatal(err)
		}
		p := startParticipant(t, e, op.ID(), "failer", "CALLS=1", "FAIL=1", "STALE=30s")
		if _, err := p.stdin.Write([]byte("fail\n")); err != nil {
			t.Fatal(err)
		}
		if line := p.readLine(t); line != "failed" {
			t.Fatalf("child said %q", line)
		}
		waitClosed(t, op.Failed(), 10*time.Second, "Failed() after another process's call failed")
		info, _ := op.Failure()
		if info.ParticipantID != "failer" || len(info.CrashedCallIDs) != 1 || info.CrashedCallIDs[0] != p.ready.Calls[0] {
			t.Fatalf("failure info %+v", info)
		}
		waitFor(t, 5*time.Second, "callbacks", func() bool { return s.onFailure.Load() == 1 && s.opFailed.Load() == 1 })
		d := archived(t, e.dir, op.ID())
		if d.OperationState != "failed" || d.RemovalTimestamp.IsZero() {
			t.Fatalf("archived %s removal %v", d.OperationState, d.RemovalTimestamp)
		}
	})
}

func TestLastLeaveStopsHeartbeat(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("stay", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b := e.Open("go", ledger.Options{})
		s1, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s2, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s1.SessionID() != 1 || s2.SessionID() != 2 {
			t.Fatalf("session ids %d, %d", s1.SessionID(), s2.SessionID())
		}
		if err := s1.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s2.Leave(ctx, ledger.LeaveOptions{}); err != nil {
			t.Fatal(err)
		}
		left := func() ledger.Participant {
			d, err := op.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return d.Participants[1]
		}
		p := left()
		if p.State != "left" {
			t.Fatalf("participant state %s after the last Leave", p.State)
		}
		// Five automatic beats of the one that stayed (about five of the
		// left one's intervals) later, the left one's heartbeat has not moved.
		beats, last := 0, op.CachedData().Participants[0].LastHeartbeat
		waitFor(t, 10*time.Second, "five beats of the participant that stayed", func() bool {
			d, err := op.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if hb := d.Participants[0].LastHeartbeat; hb.After(last) {
				beats, last = beats+1, hb
			}
			return beats >= 5
		})
		if got := left(); !got.LastHeartbeat.Equal(p.LastHeartbeat) || got.State != "left" {
			t.Fatalf("left participant still beating: %v -> %v (%s)", p.LastHeartbeat, got.LastHeartbeat, got.State)
		}
	})
}

func TestCloseSettlesOpenSessions(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		o := ledger.Options{StaleThreshold: 30 * time.Second} // no verdict by staleness
		a := e.Open("watcher", o)
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		idle := e.Open("idle", o)
		if _, err := idle.JoinOperation(ctx, op.ID(), ledger.JoinOptions{}); err != nil {
			t.Fatal(err)
		}
		busy := e.Open("busy", o)
		b, err := busy.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.StartCall[int](ctx, b, ledger.CallOptions[int]{}); err != nil {
			t.Fatal(err)
		}

		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Participants[1].State != "left" || d.OperationState != "running" {
			t.Fatalf("after Close of an idle participant: %s, operation %s", d.Participants[1].State, d.OperationState)
		}

		// Closing with a call never ended abandons it: a crash, seen at once.
		if err := busy.Close(); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, op.Failed(), 10*time.Second, "Failed() after Close abandoned a call")
	})
}
