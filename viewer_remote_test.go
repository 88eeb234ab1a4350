package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// viewerFixture is a ledger directory served by a server with a token, a
// local participant on it that does not beat during the test, one
// completed and one live operation with a call and a log line.
type viewerFixture struct {
	dir, url, token string
	l               ledger.Ledger
	done, live      *ledger.Operation
}

func newViewerFixture(t *testing.T) *viewerFixture {
	t.Helper()
	f := &viewerFixture{dir: t.TempDir(), token: "s3cret-token"}
	f.url = startHTTPTestServer(t, ledger.ServerOptions{BasePath: f.dir, Token: f.token})
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: f.dir, ParticipantID: "alice", HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	f.l = l
	f.done, err = l.CreateOperation(ctx, ledger.CreateOptions{Description: "finished"})
	require.NoError(t, err)
	require.NoError(t, f.done.Complete(ctx))
	f.live, err = l.CreateOperation(ctx, ledger.CreateOptions{Description: "ongoing"})
	require.NoError(t, err)
	_, err = ledger.StartCall[int](ctx, f.live, ledger.CallOptions[int]{Description: "step"})
	require.NoError(t, err)
	require.NoError(t, f.live.Log(ctx, ledger.LogWarning, "look here"))
	return f
}

// viewers returns a Viewer of the directory and one of the server.
func (f *viewerFixture) viewers(t *testing.T) map[string]*ledger.Viewer {
	t.Helper()
	ctx := context.Background()
	dv, err := ledger.ConnectViewer(ctx, ledger.Options{BasePath: f.dir})
	require.NoError(t, err)
	t.Cleanup(func() { dv.Close() })
	rv, err := ledger.ConnectViewer(ctx, ledger.Options{ServerURL: f.url, Token: f.token})
	require.NoError(t, err)
	t.Cleanup(func() { rv.Close() })
	return map[string]*ledger.Viewer{"dir": dv, "server": rv}
}

// TestViewerRemoteReadsAsLocal: a Viewer of the server lists, reads and
// logs exactly what a Viewer of its directory does.
func TestViewerRemoteReadsAsLocal(t *testing.T) {
	f := newViewerFixture(t)
	vs := f.viewers(t)
	dv, rv := vs["dir"], vs["server"]
	ctx := context.Background()
	for _, archived := range []bool{false, true} {
		want, err := dv.List(ctx, archived)
		require.NoError(t, err)
		got, err := rv.List(ctx, archived)
		require.NoError(t, err)
		assert.Equal(t, want, got, "archived=%v", archived)
	}
	for _, id := range []string{f.done.ID(), f.live.ID()} {
		want, err := dv.Document(ctx, id)
		require.NoError(t, err)
		got, err := rv.Document(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "document of %s", id)
		ws, err := dv.State(ctx, id)
		require.NoError(t, err)
		gs, err := rv.State(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, ws, gs)
		for _, debug := range []bool{false, true} {
			wl, err := dv.Log(ctx, id, debug)
			require.NoError(t, err)
			gl, err := rv.Log(ctx, id, debug)
			require.NoError(t, err)
			assert.Equal(t, string(wl), string(gl), "log of %s, debug=%v", id, debug)
		}
	}
	gl, err := rv.Log(ctx, f.live.ID(), false)
	require.NoError(t, err)
	assert.Contains(t, string(gl), "[WARNING] alice look here")

	d, err := rv.SetAbortFlag(ctx, f.live.ID(), "ledger-cli")
	require.NoError(t, err)
	assert.True(t, d.Aborted)
	aborted, err := f.live.CheckAbort(ctx)
	require.NoError(t, err)
	assert.True(t, aborted)
	_, _, err = rv.Prune(ctx, 0)
	assert.Error(t, err, "a server viewer cannot prune")
}

// TestViewerRemoteErrors: the errors of a server viewer are the
// sentinels of a directory viewer; without the token nothing is read.
func TestViewerRemoteErrors(t *testing.T) {
	f := newViewerFixture(t)
	ctx := context.Background()
	for name, v := range f.viewers(t) {
		_, err := v.State(ctx, "20240101T00:00:00.000-nobody-00000000")
		assert.ErrorIs(t, err, ledger.ErrOperationNotFound, name)
		_, err = v.Log(ctx, "../x", false)
		assert.ErrorIs(t, err, ledger.ErrInvalidID, name)
		_, err = v.Watch(ctx, "a/b")
		assert.ErrorIs(t, err, ledger.ErrInvalidID, name)
		_, err = v.SetAbortFlag(ctx, f.done.ID(), "ledger-cli")
		assert.ErrorIs(t, err, ledger.ErrOperationCompleted, name)
	}
	rv := f.viewers(t)["server"]
	_, err := rv.Watch(ctx, "20240101T00:00:00.000-nobody-00000000")
	assert.ErrorIs(t, err, ledger.ErrOperationNotFound)

	anon, err := ledger.ConnectViewer(ctx, ledger.Options{ServerURL: f.url, Token: "wrong"})
	require.NoError(t, err, "/status needs no token")
	defer anon.Close()
	_, err = anon.List(ctx, false)
	var re *ledger.RemoteError
	require.True(t, errors.As(err, &re), "%v", err)
	assert.Equal(t, 401, re.StatusCode)
	_, err = anon.Watch(ctx, f.live.ID())
	require.True(t, errors.As(err, &re), "%v", err)
	assert.Equal(t, 401, re.StatusCode)

	_, err = ledger.ConnectViewer(ctx, ledger.Options{BasePath: f.dir + "/missing"})
	assert.Error(t, err, "a viewer of a missing directory")
	assert.NoDirExists(t, f.dir+"/missing")
}

// wake waits for a value on ch.
func wake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		require.True(t, ok, "closed instead of woken for %s", what)
	case <-time.After(10 * time.Second):
		t.Fatalf("not woken for %s", what)
	}
}

// settle takes the wake-ups of what happened so far, so that the next
// one is for what comes after.
func settle(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// closedSoon waits for ch to close.
func closedSoon(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("%s not closed", what)
		}
	}
}

// TestViewerWatch: Watch of both viewers wakes at every change of the
// operation, pushed; the server's closes once the operation is archived,
// and both close when their context ends.
func TestViewerWatch(t *testing.T) {
	f := newViewerFixture(t)
	for name, v := range f.viewers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			op, err := f.l.CreateOperation(ctx, ledger.CreateOptions{Description: "watched " + name})
			require.NoError(t, err)
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := v.Watch(wctx, op.ID())
			require.NoError(t, err)
			settle(ch)
			c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			require.NoError(t, err)
			wake(t, ch, "a call started")
			d, err := v.State(ctx, op.ID())
			require.NoError(t, err)
			assert.Len(t, d.CallFrames, 1)
			settle(ch)
			require.NoError(t, c.End(ctx, 1))
			wake(t, ch, "a call ended")
			settle(ch)
			require.NoError(t, op.Complete(ctx))
			wake(t, ch, "the operation completed")
			if name == "server" {
				closedSoon(t, ch, "the stream of an archived operation")
			}
			cancel()
			closedSoon(t, ch, "the watch whose context ended")
		})
	}
}

// TestViewerWatchList: WatchList of both viewers wakes when an operation
// is created or changes.
func TestViewerWatchList(t *testing.T) {
	f := newViewerFixture(t)
	for name, v := range f.viewers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := v.WatchList(wctx)
			require.NoError(t, err)
			settle(ch)
			op, err := f.l.CreateOperation(ctx, ledger.CreateOptions{Description: "new " + name})
			require.NoError(t, err)
			wake(t, ch, "a new operation")
			settle(ch)
			require.NoError(t, op.Log(ctx, ledger.LogInfo, "hello"))
			wake(t, ch, "a change")
			cancel()
			closedSoon(t, ch, "the list watch whose context ended")
		})
	}
}
