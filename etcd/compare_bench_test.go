package etcd_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
)

// BenchmarkLedgerVsEtcd is the comparison of issue 12, outside the core
// module so that its go.mod stays free of etcd: a call round trip
// (StartCall + End) on a LocalLedger, without and with Durable, side by
// side with etcd's own fastest equivalent of two changes, two
// transactions that each put a key guarded by a compare of its revision,
// on an embedded etcd without fsync (UnsafeNoFsync) and with it. The four
// run interleaved, in rounds of ten, in the same run on the same machine;
// it reports each one's time per round trip and the ratios:
//
//	etcd-nofsync/ledger        above 1: the ledger is faster than etcd without fsync
//	etcd-fsync/ledger-durable  above 1: Durable is faster than etcd with fsync
func BenchmarkLedgerVsEtcd(b *testing.B) {
	ctx := context.Background()
	local := func(durable bool) *ledger.Operation {
		l, err := ledger.Connect(ctx, ledger.Options{BasePath: b.TempDir(), Durable: durable, ParticipantID: "bench", NoSignalHandler: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return op
	}
	plain, durable := local(false), local(true)
	noFsync, fsync := rawTxns(b, benchCluster(b, false)), rawTxns(b, benchCluster(b, true))

	variants := []struct {
		name string
		run  func() error
	}{
		{"ledger", func() error { return callRoundTrip(ctx, plain) }},
		{"ledger-durable", func() error { return callRoundTrip(ctx, durable) }},
		{"etcd-nofsync", noFsync},
		{"etcd-fsync", fsync},
	}
	spent := make([]time.Duration, len(variants))
	const round = 10
	rounds := 0
	for b.Loop() {
		for i, v := range variants {
			start := time.Now()
			for range round {
				if err := v.run(); err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
			}
			spent[i] += time.Since(start)
		}
		rounds++
	}
	per := func(i int) float64 { return float64(spent[i].Nanoseconds()) / float64(rounds*round) }
	for i, v := range variants {
		b.ReportMetric(per(i)/1e3, v.name+"-µs")
	}
	b.ReportMetric(per(2)/per(0), "etcd-nofsync/ledger")
	b.ReportMetric(per(3)/per(1), "etcd-fsync/ledger-durable")
}

// rawTxns returns what runs two raw etcd changes on the cluster at
// endpoints: each a transaction that puts a 200-byte value under a key if
// the key's revision is still the one the last put gave it.
func rawTxns(b *testing.B, endpoints []string) func() error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	ctx := context.Background()
	const key = "/bench/raw"
	value := string(make([]byte, 200))
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		b.Fatal(err)
	}
	rev := resp.Header.Revision
	put := func() error {
		r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, value)).Commit()
		if err != nil {
			return err
		}
		if !r.Succeeded {
			b.Fatal("the compare failed")
		}
		rev = r.Header.Revision
		return nil
	}
	return func() error {
		if err := put(); err != nil {
			return err
		}
		return put()
	}
}

// BenchmarkSharedOpLocalVsEtcd is the 16-client throughput of one
// operation on each backend in the same run: sixteen participants, each
// a ledger of its own, make call round trips (StartCall + End) on one
// operation, on a ledger directory and on an embedded etcd without fsync
// (UnsafeNoFsync), in rounds of 64 calls that alternate between the two.
// It reports each one's calls/s and
//
//	local/etcd  how many times the calls/s of etcd the directory makes
func BenchmarkSharedOpLocalVsEtcd(b *testing.B) {
	const clients, round = 16, 64
	ctx := context.Background()
	dir := b.TempDir()
	local := sharedOp(b, func(i int) ledger.Ledger {
		l, err := ledger.Connect(ctx, ledger.Options{BasePath: dir, ParticipantID: fmt.Sprintf("c%02d", i), NoSignalHandler: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	}, clients)
	c := etcd.Config{Client: clientv3.Config{Endpoints: benchCluster(b, false)}, Prefix: "/bench/"}
	remote := sharedOp(b, func(i int) ledger.Ledger { return benchLedger(b, c, fmt.Sprintf("c%02d", i)) }, clients)

	var spent [2]time.Duration
	calls := 0
	for b.Loop() {
		for i, ops := range [][]*ledger.Operation{local, remote} {
			d, err := burst(ctx, ops, round)
			if err != nil {
				b.Fatal(err)
			}
			spent[i] += d
		}
		calls += round
	}
	rate := func(i int) float64 { return float64(calls) / spent[i].Seconds() }
	b.ReportMetric(rate(0), "local-calls/s")
	b.ReportMetric(rate(1), "etcd-calls/s")
	b.ReportMetric(rate(0)/rate(1), "local/etcd")
}

// sharedOp opens n ledgers with open and returns one operation that all
// of them take part in, by the handle of each.
func sharedOp(b *testing.B, open func(i int) ledger.Ledger, n int) []*ledger.Operation {
	ctx := context.Background()
	ops := make([]*ledger.Operation, n)
	for i := range n {
		var err error
		if i == 0 {
			ops[i], err = open(i).CreateOperation(ctx, ledger.CreateOptions{})
		} else {
			ops[i], err = open(i).JoinOperation(ctx, ops[0].ID(), ledger.JoinOptions{})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	return ops
}

// burst makes n call round trips, shared out among the handles ops all at
// once, and returns how long they took.
func burst(ctx context.Context, ops []*ledger.Operation, n int) (time.Duration, error) {
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	errs := make(chan error, len(ops))
	var wg sync.WaitGroup
	start := time.Now()
	for _, op := range ops {
		wg.Go(func() {
			for range work {
				if err := callRoundTrip(ctx, op); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	return d, <-errs
}
