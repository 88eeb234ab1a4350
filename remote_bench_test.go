package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// The remote target (DESIGN §7): a call round trip (StartCall + End, two
// requests) within 1.5x of two loopback HTTP no-op round trips plus the
// local round trip. Run:
//
//	go test -run '^$' -bench 'RemoteCallRoundTrip|HTTPFloor|ServerThroughput' -benchtime 2s .

// benchOptions keeps heartbeats out of the measurement.
func benchOptions(id, url string) ledger.Options {
	return ledger.Options{ParticipantID: id, ServerURL: url, HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour}
}

// BenchmarkHTTPFloor is one round trip of a JSON POST the size of a call
// request to a no-op handler, on the same httptest setup as the server.
func BenchmarkHTTPFloor(b *testing.B) {
	noop := newHTTPFloor(b)
	for b.Loop() {
		noop()
	}
}

// newHTTPFloor starts a no-op JSON handler on loopback and returns one
// round trip to it.
func newHTTPFloor(b *testing.B) func() {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"success":true}`))
	}))
	b.Cleanup(ts.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	body := []byte(`{"participantId":"bench","participantPid":12345,"host":"benchhost","operationId":"20240101T00:00:00.000-bench-0000beef","callId":"call_bench_1_abcd","failOnCrash":true}`)
	return func() {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/call/start", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		require.NoError(b, err)
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// BenchmarkRemoteOverFloor alternates, in every iteration, a remote call
// round trip, a local one and two HTTP no-op round trips, so that all of
// them meet the same load (this machine's file system is noisy), and
// reports the remote round trip over its floor (target: at most 1.5).
func BenchmarkRemoteOverFloor(b *testing.B) {
	ctx := context.Background()
	noop := newHTTPFloor(b)
	roundTrip := func(o ledger.Options) func() {
		l, err := ledger.Connect(ctx, o)
		require.NoError(b, err)
		b.Cleanup(func() { l.Close() })
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(b, err)
		return func() {
			c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			require.NoError(b, err)
			require.NoError(b, c.End(ctx, 1))
		}
	}
	remote := roundTrip(benchOptions("bench", startHTTPTestServer(b, ledger.ServerOptions{BasePath: b.TempDir()})))
	lo := benchOptions("bench", "")
	lo.BasePath = b.TempDir()
	local := roundTrip(lo)
	var tRemote, tLocal, tHTTP time.Duration
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	for b.Loop() {
		tRemote += timed(remote)
		tLocal += timed(local)
		tHTTP += timed(noop) + timed(noop)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tRemote.Microseconds())/n, "remote-µs")
	b.ReportMetric(float64(tLocal.Microseconds())/n, "local-µs")
	b.ReportMetric(float64(tHTTP.Microseconds())/n, "2http-µs")
	b.ReportMetric(float64(tRemote)/float64(tLocal+tHTTP), "x-floor")
}

// BenchmarkRemoteCallRoundTrip is StartCall + End through a server on
// loopback ("remote") and, for the comparison, on the local backend over
// a directory of the same file system ("local").
func BenchmarkRemoteCallRoundTrip(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, l ledger.Ledger) {
		defer l.Close()
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "bench"})
		require.NoError(b, err)
		b.ResetTimer()
		for b.Loop() {
			c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			require.NoError(b, err)
			require.NoError(b, c.End(ctx, 1))
		}
	}
	b.Run("remote", func(b *testing.B) {
		url := startHTTPTestServer(b, ledger.ServerOptions{BasePath: b.TempDir()})
		l, err := ledger.Connect(ctx, benchOptions("bench", url))
		require.NoError(b, err)
		run(b, l)
	})
	b.Run("local", func(b *testing.B) {
		o := benchOptions("bench", "")
		o.BasePath = b.TempDir()
		l, err := ledger.Connect(ctx, o)
		require.NoError(b, err)
		run(b, l)
	})
}

// BenchmarkServerThroughput runs call round trips from many clients at
// once, each its own participant, on their own operations ("own": the
// server's parallelism) or all on one ("shared": serialised by the file
// lock). It reports calls/s.
func BenchmarkServerThroughput(b *testing.B) {
	for _, shared := range []bool{false, true} {
		for _, clients := range []int{16, 64} {
			name := fmt.Sprintf("op=%s/clients=%d", map[bool]string{false: "own", true: "shared"}[shared], clients)
			b.Run(name, func(b *testing.B) { benchThroughput(b, clients, shared) })
		}
	}
}

func benchThroughput(b *testing.B, clients int, shared bool) {
	ctx := context.Background()
	url := startHTTPTestServer(b, ledger.ServerOptions{BasePath: b.TempDir()})
	ops := make([]*ledger.Operation, clients)
	var first *ledger.Operation
	for i := range clients {
		l, err := ledger.Connect(ctx, benchOptions(fmt.Sprintf("c%02d", i), url))
		require.NoError(b, err)
		defer l.Close()
		if shared && first != nil {
			ops[i], err = l.JoinOperation(ctx, first.ID(), ledger.JoinOptions{})
		} else {
			ops[i], err = l.CreateOperation(ctx, ledger.CreateOptions{})
		}
		require.NoError(b, err)
		first = ops[0]
	}
	work := make(chan struct{}, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed := false
			for range work { // drained even after a failure, so the feeder never blocks
				if failed {
					continue
				}
				c, err := ledger.StartCall[int](ctx, ops[i], ledger.CallOptions[int]{})
				if err == nil {
					err = c.End(ctx, 1)
				}
				if err != nil {
					errs <- err
					failed = true
				}
			}
		}()
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
}
