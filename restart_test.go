package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tomdist/ledger"
)

// TestServerRemembersChangesAcrossCompactionAndRestart loses the answer
// to a StartCall that the server carried out, ends that call, has another
// client make enough changes for the journal to be compacted past its
// record many times over, restarts the
// server and sends the lost request once more, as a client retrying after
// a restart does: the new server answers it without starting the call a
// second time.
func TestServerRemembersChangesAcrossCompactionAndRestart(t *testing.T) {
	dir := t.TempDir()
	var (
		mu       sync.Mutex // guards the three below
		next     http.Handler
		lost     http.Header // of the StartCall whose answer was lost
		lostBody []byte
	)
	first := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	next = first
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h, drop := next, lost == nil && r.URL.Path == "/call/start"
		mu.Unlock()
		if !drop {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(httptest.NewRecorder(), r) // carried out...
		mu.Lock()
		lost, lostBody = r.Header.Clone(), body
		mu.Unlock()
		conn, _, err := http.NewResponseController(w).Hijack()
		require.NoError(t, err)
		conn.Close() // ...but the answer is lost
	}))
	defer ts.Close()
	ctx := context.Background()

	l, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "retrier", ServerURL: ts.URL})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	c, err := ledger.StartCall(ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err, "StartCall retried after its answer was lost")
	require.NotNil(t, lost, "no StartCall answer was lost")
	require.NoError(t, c.End(ctx, 0))
	other, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "other", ServerURL: ts.URL})
	require.NoError(t, err)
	defer other.Close()
	oop, err := other.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	const more = 300 // records: more than a compaction lets pass
	for i := range more {
		c, err := ledger.StartCall(ctx, oop, ledger.CallOptions[int]{})
		require.NoError(t, err)
		require.NoError(t, c.End(ctx, i))
	}

	second := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	mu.Lock()
	next = second
	mu.Unlock()
	require.NoError(t, first.Close())
	defer second.Close()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/call/start", bytes.NewReader(lostBody))
	require.NoError(t, err)
	req.Header = lost
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "the lost StartCall sent again")

	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.Empty(t, d.CallFrames, "every call ended; the repeated StartCall started one again")
	require.NoError(t, oop.Leave(ctx, ledger.LeaveOptions{}))
	require.NoError(t, op.Complete(ctx))
	log, err := os.ReadFile(filepath.Join(dir, "backup", op.ID(), "operation.log"))
	require.NoError(t, err)
	evs := count(logEvents(string(log)))
	assert.Equal(t, 1+more, evs["CALL_STARTED"], "CALL_STARTED lines")
	assert.Equal(t, 1+more, evs["CALL_ENDED"], "CALL_ENDED lines")
}

// TestRemoteClientsRideOutServerRestarts restarts a real `ledger serve`
// ten times on the same address (five SIGKILLs, five SIGTERMs) while 16
// clients start calls, log and end calls as fast as they can: no client
// sees an error, and the archived log holds every change exactly once.
func TestRemoteClientsRideOutServerRestarts(t *testing.T) {
	const (
		clients  = 16
		restarts = 10
	)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	serve := func() *binaryServer {
		_, bs := startBinaryServer(t, dir, "--addr", addr) // the last --addr counts
		return bs
	}
	bs := serve()
	url := "http://" + addr
	ctx := context.Background()

	init, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "init", ServerURL: url})
	require.NoError(t, err)
	defer init.Close()
	op, err := init.CreateOperation(ctx, ledger.CreateOptions{Description: "restarts"})
	require.NoError(t, err)

	var (
		done  = make(chan struct{})
		calls atomic.Int64 // round trips completed, by all clients
		wg    sync.WaitGroup
		errs  = make([]error, clients) // each written by its client
		bad   atomic.Int32             // clients that failed
	)
	for i := range clients {
		l, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: fmt.Sprintf("c%d", i), ServerURL: url})
		require.NoError(t, err)
		defer l.Close()
		cop, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					errs[i] = cop.Leave(ctx, ledger.LeaveOptions{})
					return
				default:
				}
				c, err := ledger.StartCall(ctx, cop, ledger.CallOptions[int]{})
				if err == nil {
					err = cop.Log(ctx, ledger.LogInfo, fmt.Sprintf("c%d step %d", i, n))
				}
				if err == nil {
					err = c.End(ctx, n)
				}
				if err != nil {
					errs[i] = fmt.Errorf("round trip %d: %w", n, err)
					bad.Add(1)
					return
				}
				calls.Add(1)
			}
		})
	}

	progress := func(what string) {
		t.Helper()
		want := calls.Load() + 2*clients
		waitFor(t, 30*time.Second, what, func() bool { return calls.Load() >= want || bad.Load() > 0 })
	}
	for r := range restarts {
		progress(fmt.Sprintf("round trips before restart %d", r+1))
		if r%2 == 0 {
			require.NoError(t, bs.cmd.Process.Kill())
			<-bs.done
		} else {
			bs.stop(t) // SIGTERM, and a graceful exit
		}
		bs = serve()
	}
	progress("round trips after the last restart")
	close(done)
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "client c%d", i)
	}
	f, failed := op.Failure()
	require.False(t, failed, "the operation failed: %+v", f)
	require.NoError(t, op.Complete(ctx))

	log, err := os.ReadFile(filepath.Join(dir, "backup", op.ID(), "operation.log"))
	require.NoError(t, err)
	n := int(calls.Load())
	evs := count(logEvents(string(log)))
	assert.Equal(t, n, evs["CALL_STARTED"], "CALL_STARTED lines for %d round trips", n)
	assert.Equal(t, n, evs["CALL_ENDED"], "CALL_ENDED lines for %d round trips", n)
	assert.Zero(t, evs["CRASH_DETECTED"], "crash verdicts")
	steps := count(regexp.MustCompile(`c\d+ step \d+`).FindAllString(string(log), -1))
	assert.Len(t, steps, n, "distinct log messages")
	for step, k := range steps {
		assert.Equal(t, 1, k, "%q logged %d times", step, k)
	}
}
