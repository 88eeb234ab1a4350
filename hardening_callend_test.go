package ledger_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// writeFault fails every write of one state file while it is on, as a
// failing disk would, and counts the writes it failed.
type writeFault struct {
	on   atomic.Bool
	hits atomic.Int64
}

// injectWriteFault makes the writes of op's state file in dir fail with
// EIO until the returned fault is turned off.
func injectWriteFault(t *testing.T, dir string, op *ledger.Operation) *writeFault {
	t.Helper()
	path := filepath.Join(dir, op.ID()+".operation.journal")
	f := &writeFault{}
	f.on.Store(true)
	ledger.SetWriteFault(func(p string) error {
		if p != path || !f.on.Load() {
			return nil
		}
		f.hits.Add(1)
		return &fs.PathError{Op: "write", Path: p, Err: syscall.EIO}
	})
	t.Cleanup(func() { ledger.SetWriteFault(nil) })
	return f
}

// quietOptions keep the monitor from writing the state file during a test:
// the only writes are the test's own.
func quietOptions() ledger.Options {
	return ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour}
}

func TestCallFailRetriedAfterWriteError(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", quietOptions())
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	var cleanups atomic.Int32
	c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{
		Callback: ledger.CallCallback[int]{OnCleanup: func() { cleanups.Add(1) }},
	})
	require.NoError(t, err)

	fault := injectWriteFault(t, e.dir, op)
	err = c.Fail(ctx, errors.New("broken"))
	require.ErrorIs(t, err, syscall.EIO)
	assert.False(t, c.IsCompleted(), "a Fail that did not reach the ledger completed the call")
	assert.Equal(t, 1, op.PendingCallCount())
	assert.Zero(t, cleanups.Load(), "OnCleanup ran for a Fail that did not reach the ledger")
	_, failed := op.Failure()
	assert.False(t, failed)

	fault.on.Store(false)
	require.NoError(t, c.Fail(ctx, errors.New("broken")), "Fail again once the disk works")
	assert.True(t, c.IsCompleted())
	assert.Zero(t, op.PendingCallCount())
	waitClosed(t, op.Failed(), 5*time.Second, "the operation to fail")
	assert.Equal(t, int32(1), cleanups.Load())
	assert.Equal(t, 1, count(logEvents(operationLog(t, e.dir, op.ID())))["CALL_FAILED"])
	require.ErrorIs(t, c.Fail(ctx, errors.New("again")), ledger.ErrCallCompleted)
}

func TestSpawnedCallEndRetriedAfterWriteError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error  // what the work returns
		event string // the log event of its end
	}{
		{"success", nil, "CALL_COMPLETED"},
		{"failure", errors.New("work broke"), "CALL_FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := localEnv(t)
			l := e.Open("alice", quietOptions())
			op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
			require.NoError(t, err)
			release := make(chan struct{})
			call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
				<-release
				return 7, tc.err
			}, ledger.CallOptions[int]{})
			fault := injectWriteFault(t, e.dir, op)
			close(release)

			waitFor(t, 5*time.Second, "the end to fail three times", func() bool { return fault.hits.Load() >= 3 })
			assert.False(t, call.IsCompleted(), "a call whose end did not reach the ledger has an outcome")
			select {
			case <-call.Done():
				require.Failf(t, "Done closed although the end never reached the ledger", "Err: %v", call.Err())
			default:
			}
			assert.Equal(t, 1, op.PendingCallCount())

			fault.on.Store(false)
			v, err := call.Wait(ctx)
			d := readState(t, e.dir, op.ID())
			assert.Empty(t, d.CallFrames)
			assert.Equal(t, 1, count(logEvents(operationLog(t, e.dir, op.ID())))[tc.event])
			if tc.err == nil {
				require.NoError(t, err)
				assert.Equal(t, 7, v)
				return
			}
			var cfe *ledger.CallFailedError
			require.ErrorAs(t, err, &cfe)
			assert.ErrorIs(t, err, tc.err)
			waitClosed(t, op.Failed(), 5*time.Second, "the operation to fail")
		})
	}
}

func TestSpawnedCallEndRetryStopsAtClose(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	l := e.Open("alice", quietOptions())
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	release := make(chan struct{})
	call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
		<-release
		return 7, nil
	}, ledger.CallOptions[int]{})
	fault := injectWriteFault(t, e.dir, op)
	close(release)
	waitFor(t, 5*time.Second, "the end to fail", func() bool { return fault.hits.Load() >= 1 })

	// Close stops the retries; the frame is still in the ledger, so the
	// process tries to report itself crashed, which the disk refuses too.
	err = l.Close()
	assert.ErrorIs(t, err, syscall.EIO, "Close did not treat the call as running")
	waitClosed(t, call.Done(), 5*time.Second, "the call to end")
	assert.ErrorIs(t, call.Err(), ledger.ErrClosed)
	assert.False(t, call.IsSuccess())
	d := readState(t, e.dir, op.ID())
	require.Len(t, d.CallFrames, 1, "the frame that never left the ledger")
	assert.Equal(t, call.ID(), d.CallFrames[0].CallID)
}

// readState decodes the state file of id in dir, live or archived.
func readState(t *testing.T, dir, id string) *ledger.Data {
	t.Helper()
	return fDirState(t, dir, id)
}

// flakyServer serves a ledger directory over HTTP and answers the next
// request to an armed path with 500 internal, without passing it on.
type flakyServer struct {
	url   string
	armed atomic.Pointer[string]
	hits  atomic.Int32
}

func startFlakyServer(t *testing.T, dir string) *flakyServer {
	t.Helper()
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	require.NoError(t, srv.Err())
	f := &flakyServer{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := f.armed.Load(); p != nil && *p == r.URL.Path && f.armed.CompareAndSwap(p, nil) {
			f.hits.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"ledger: injected fault","code":"internal"}`)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	f.url = ts.URL
	return f
}

// arm makes the next request to path fail.
func (f *flakyServer) arm(path string) { f.armed.Store(&path) }

func TestCallEndRetriedAfterServerError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := startFlakyServer(t, dir)
	e := &env{t: t, dir: dir, url: srv.url, remote: true, open: remoteOpener(srv.url, "")}
	l := e.Open("alice", ledger.Options{})
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	internal := func(t *testing.T, err error) {
		t.Helper()
		var re *ledger.RemoteError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, http.StatusInternalServerError, re.StatusCode)
	}

	t.Run("End", func(t *testing.T) {
		c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{})
		require.NoError(t, err)
		srv.arm("/call/end")
		internal(t, c.End(ctx, 1))
		assert.False(t, c.IsCompleted())
		require.NoError(t, c.End(ctx, 1))
		assert.True(t, c.IsCompleted())
	})
	t.Run("Fail", func(t *testing.T) {
		c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{Contained: true})
		require.NoError(t, err)
		srv.arm("/call/fail")
		internal(t, c.Fail(ctx, errors.New("broken")))
		assert.False(t, c.IsCompleted())
		require.NoError(t, c.Fail(ctx, errors.New("broken")))
		assert.True(t, c.IsCompleted())
	})
	t.Run("spawned", func(t *testing.T) {
		srv.arm("/call/end")
		before := srv.hits.Load()
		call := ledger.SpawnCall(op, func(ctx context.Context, _ *ledger.SpawnedCall[int]) (int, error) {
			return 7, nil
		}, ledger.CallOptions[int]{})
		v, err := call.Wait(ctx)
		require.NoError(t, err)
		assert.Equal(t, 7, v)
		assert.Equal(t, before+1, srv.hits.Load(), "the injected 500 was not met")
	})

	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.Empty(t, d.CallFrames)
	_, failed := op.Failure()
	assert.False(t, failed)
	require.NoError(t, l.Close())
}

// TestCallSettledByTheLedger: an answer that proves the frame or the
// operation gone ends a call although End or Fail did not apply.
func TestCallSettledByTheLedger(t *testing.T) {
	ctx := context.Background()

	t.Run("frame gone", func(t *testing.T) {
		e := localEnv(t)
		l := e.Open("alice", ledger.Options{})
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{})
		require.NoError(t, err)
		require.NoError(t, op.DeleteCallFrame(ctx, c.ID()))

		require.ErrorIs(t, c.End(ctx, 1), ledger.ErrCallNotFound)
		assert.True(t, c.IsCompleted())
		assert.Zero(t, op.PendingCallCount())
		require.ErrorIs(t, c.End(ctx, 1), ledger.ErrCallCompleted)
		// Nothing of the call is left: Close leaves, it reports no crash.
		require.NoError(t, l.Close())
		d := readState(t, e.dir, op.ID())
		assert.Equal(t, ledger.StateRunning, d.OperationState)
		require.Len(t, d.Participants, 1)
		assert.Equal(t, ledger.ParticipantLeft, d.Participants[0].State)
	})

	for _, end := range []string{"End", "Fail"} {
		t.Run("operation failed/"+end, func(t *testing.T) {
			e := localEnv(t)
			// alice hears of the failure only from the answer to End or
			// Fail; bob coordinates it and archives the operation.
			alice := e.Open("alice", ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour, LivenessPoll: time.Hour, PollDirectory: true})
			bob := e.Open("bob", ledger.Options{StaleThreshold: 10 * time.Second})
			op, err := alice.CreateOperation(ctx, ledger.CreateOptions{})
			require.NoError(t, err)
			var opFailed, cleanups, completions atomic.Int32
			c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{Callback: ledger.CallCallback[int]{
				OnOperationFailed: func(ledger.OperationFailedInfo) { opFailed.Add(1) },
				OnCleanup:         func() { cleanups.Add(1) },
				OnCompletion:      func(int) { completions.Add(1) },
			}})
			require.NoError(t, err)
			joined, err := bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
			require.NoError(t, err)
			bc, err := ledger.StartCall(ctx, joined, ledger.CallOptions[int]{})
			require.NoError(t, err)
			require.NoError(t, bc.Fail(ctx, errors.New("bob broke")))
			waitFor(t, 5*time.Second, "the failure to be archived", func() bool {
				return readState(t, e.dir, op.ID()).OperationState == ledger.StateFailed
			})

			if end == "End" {
				err = c.End(ctx, 1)
			} else {
				err = c.Fail(ctx, errors.New("alice broke too"))
			}
			var ofe *ledger.OperationFailedError
			require.ErrorAs(t, err, &ofe)
			assert.Equal(t, "bob broke", ofe.Info.Reason)
			assert.True(t, c.IsCompleted())
			assert.Zero(t, op.PendingCallCount())
			// The call's own callbacks have run when End or Fail returns,
			// once, however the failure's delivery raced with it.
			assert.Equal(t, int32(1), opFailed.Load(), "OnOperationFailed")
			assert.Equal(t, int32(1), cleanups.Load(), "OnCleanup")
			waitClosed(t, op.Failed(), 5*time.Second, "alice to take in the failure")
			assert.Equal(t, int32(1), opFailed.Load(), "OnOperationFailed")
			assert.Equal(t, int32(1), cleanups.Load(), "OnCleanup")
			assert.Zero(t, completions.Load(), "OnCompletion")
			require.ErrorIs(t, c.End(ctx, 1), ledger.ErrCallCompleted)
		})
	}
}
