package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// benchFrames are the numbers of active call frames the store benchmarks
// run at.
var benchFrames = []int{1, 100, 1000}

// benchOperation opens a local ledger in a fresh directory (Durable as
// given) and creates an operation holding frames-1 active calls, so that a
// call started by the benchmark is the frames-th.
func benchOperation(b *testing.B, frames int, durable bool) *ledger.Operation {
	b.Helper()
	dir := b.TempDir()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "bench", NoSignalHandler: true, Durable: durable})
	require.NoError(b, err)
	b.Cleanup(func() { l.Close() })
	ctx := context.Background()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "benchmark"})
	require.NoError(b, err)
	for range frames - 1 {
		_, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "background work"})
		require.NoError(b, err)
	}
	return op
}

// BenchmarkCallRoundTrip measures StartCall + End on a local ledger: two
// complete ledger changes (lock, read what others appended, decide,
// append one record, append its log line, unlock).
func BenchmarkCallRoundTrip(b *testing.B) {
	for _, durable := range []bool{false, true} {
		for _, n := range benchFrames {
			b.Run(fmt.Sprintf("durable=%t/frames=%d", durable, n), func(b *testing.B) {
				op := benchOperation(b, n, durable)
				ctx := context.Background()
				opts := ledger.CallOptions[int]{Description: "background work"}
				for b.Loop() {
					call, err := ledger.StartCall[int](ctx, op, opts)
					require.NoError(b, err)
					require.NoError(b, call.End(ctx, 1))
				}
			})
		}
	}
}

// floor is the least a change of a journal costs, with no ledger code: an
// flock of a lock file, a look at the journal's size (what a writer must
// read first), one O_APPEND write of a record of a call's size, unlock.
type floor struct {
	lock    *flock.Flock
	journal string
	record  []byte
}

func newFloor(b *testing.B) *floor {
	dir := b.TempDir()
	f := &floor{
		lock:    flock.New(filepath.Join(dir, "floor.operation.lock")),
		journal: filepath.Join(dir, "floor.operation.journal"),
		record:  make([]byte, 250),
	}
	for i := range f.record {
		f.record[i] = 'x'
	}
	f.record[len(f.record)-1] = '\n'
	require.NoError(b, os.WriteFile(f.journal, nil, 0o644))
	return f
}

// change is one raw journal change.
func (f *floor) change() error {
	if err := f.lock.Lock(); err != nil {
		return err
	}
	defer f.lock.Unlock()
	j, err := os.OpenFile(f.journal, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer j.Close()
	if _, err := j.Stat(); err != nil {
		return err
	}
	_, err = j.Write(f.record)
	return err
}

// BenchmarkStoreFloor measures the floor change.
func BenchmarkStoreFloor(b *testing.B) {
	f := newFloor(b)
	for b.Loop() {
		require.NoError(b, f.change())
	}
}

// BenchmarkRoundTripOverFloor alternates two floor changes and one call
// round trip (two ledger changes) on the same machine load, so that both
// meet the same noise, and reports their ratio.
func BenchmarkRoundTripOverFloor(b *testing.B) {
	for _, n := range benchFrames {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			op := benchOperation(b, n, false)
			ctx := context.Background()
			opts := ledger.CallOptions[int]{Description: "background work"}
			f := newFloor(b)
			var fl, trip time.Duration
			for b.Loop() {
				t0 := time.Now()
				require.NoError(b, f.change())
				require.NoError(b, f.change())
				t1 := time.Now()
				call, err := ledger.StartCall[int](ctx, op, opts)
				require.NoError(b, err)
				require.NoError(b, call.End(ctx, 1))
				fl += t1.Sub(t0)
				trip += time.Since(t1)
			}
			b.ReportMetric(float64(fl.Microseconds())/float64(b.N), "floor-µs")
			b.ReportMetric(float64(trip.Microseconds())/float64(b.N), "roundtrip-µs")
			b.ReportMetric(float64(trip)/float64(fl), "x-floor")
		})
	}
}
