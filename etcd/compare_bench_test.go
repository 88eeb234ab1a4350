package etcd_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
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
