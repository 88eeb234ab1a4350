package etcd_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
	"github.com/tomdist/ledger/etcd/embedded"
)

// Benchmarks of the etcd ledger beside the local and remote ones of the
// core (BenchmarkCallRoundTrip, BenchmarkServerThroughput): the shared
// test cluster has no fsync; benchmarks that need one start their own.

// benchCluster starts a one-member cluster for a benchmark.
func benchCluster(b *testing.B, fsync bool) []string {
	b.Helper()
	cl, err := embedded.Start(embedded.Options{Dir: b.TempDir(), NoFsync: !fsync, LogLevel: "fatal"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return cl.Endpoints()
}

// benchLedger opens a ledger for participant name on c. Its etcd client
// logs nothing: the warnings of calls cut short by Close would break the
// lines of the benchmarks' results.
func benchLedger(b *testing.B, c etcd.Config, name string) ledger.Ledger {
	b.Helper()
	c.Client.Logger = zap.NewNop()
	l, err := etcd.Connect(context.Background(), c, ledger.Options{ParticipantID: name, NoSignalHandler: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// callRoundTrip runs StartCall + End once.
func callRoundTrip(ctx context.Context, op *ledger.Operation) error {
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "background work"})
	if err != nil {
		return err
	}
	return call.End(ctx, 1)
}

// BenchmarkEtcdCallRoundTrip measures StartCall + End on an etcd ledger:
// two changes, each one guarded transaction (the store's cache of the
// head saves the read), with and without etcd's fsync.
func BenchmarkEtcdCallRoundTrip(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%t", fsync), func(b *testing.B) {
			c := etcd.Config{Client: clientv3.Config{Endpoints: benchCluster(b, fsync)}, Prefix: "/bench/"}
			ctx := context.Background()
			op, err := benchLedger(b, c, "bench").CreateOperation(ctx, ledger.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := callRoundTrip(ctx, op); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEtcdThroughput runs call round trips from 16 clients at once,
// each a participant with a connection of its own, on their own
// operations ("own") or all on one ("shared": serialised by the head's
// compare, in turns under contention). It reports calls/s, and the 99th
// percentile and the slowest of the round trips: a client starved by the
// others shows in them.
func BenchmarkEtcdThroughput(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		for _, shared := range []bool{false, true} {
			name := fmt.Sprintf("fsync=%t/op=%s/clients=16", fsync, map[bool]string{false: "own", true: "shared"}[shared])
			b.Run(name, func(b *testing.B) { benchEtcdThroughput(b, fsync, shared, 16) })
		}
	}
}

func benchEtcdThroughput(b *testing.B, fsync, shared bool, clients int) {
	ctx := context.Background()
	c := etcd.Config{Client: clientv3.Config{Endpoints: benchCluster(b, fsync)}, Prefix: "/bench/"}
	ops := make([]*ledger.Operation, clients)
	for i := range clients {
		l := benchLedger(b, c, fmt.Sprintf("c%02d", i))
		var err error
		if shared && i > 0 {
			ops[i], err = l.JoinOperation(ctx, ops[0].ID(), ledger.JoinOptions{})
		} else {
			ops[i], err = l.CreateOperation(ctx, ledger.CreateOptions{})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	work := make(chan struct{}, clients)
	errs := make(chan error, clients)
	lats := make([][]time.Duration, clients) // lats[i]: client i's round trips
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			failed := false
			for range work {
				if !failed {
					t0 := time.Now()
					if err := callRoundTrip(ctx, ops[i]); err != nil {
						errs <- err
						failed = true
					}
					lats[i] = append(lats[i], time.Since(t0))
				}
			}
		})
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
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	all := slices.Concat(lats...)
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1e3, "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1e3, "max-ms")
}

// BenchmarkEtcdKillDetection measures kill -9 of a participant process
// to the survivor's Failed: the participant's lease (TTL one second, the
// least etcd grants) expires and its member key's deletion reaches the
// survivor by watch. Each iteration is one kill; it reports the median
// and the slowest detection. The shared cluster has an election timeout
// of 100ms; etcd checks for expired leases every 500ms.
func BenchmarkEtcdKillDetection(b *testing.B) {
	ctx := context.Background()
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		c := config(b)
		l := benchLedger(b, c, "survivor")
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		victim := startParticipant(b, c, op.ID(), "victim")
		b.StartTimer()
		start := time.Now()
		if err := victim.Process.Kill(); err != nil {
			b.Fatal(err)
		}
		select {
		case <-op.Failed():
			lat = append(lat, time.Since(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no verdict 10s after the kill")
		}
		b.StopTimer()
		victim.Wait()
		l.Close()
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
}
