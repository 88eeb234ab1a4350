package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// benchOp opens a local ledger in a temp directory and creates an
// operation on it.
func benchOp(b *testing.B) *ledger.Operation {
	b.Helper()
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{BasePath: b.TempDir(), ParticipantID: "bench"})
	require.NoError(b, err)
	b.Cleanup(func() { l.Close() })
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "bench"})
	require.NoError(b, err)
	return op
}

// BenchmarkSpawnSync measures SpawnCall + completion + Sync of n trivial
// calls on the local ledger, and reports the cost per call (ns/call). The
// StartCallEnd case is the StartCall + End round trip measured in the same
// run, for comparison: a spawned call costs the same two ledger writes
// plus a goroutine.
func BenchmarkSpawnSync(b *testing.B) {
	trivial := func(context.Context, *ledger.SpawnedCall[int]) (int, error) { return 1, nil }
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			op := benchOp(b)
			ctx := context.Background()
			calls := make([]ledger.Spawned, n)
			b.ResetTimer()
			for range b.N {
				for i := range calls {
					calls[i] = ledger.SpawnCall(op, trivial, ledger.CallOptions[int]{})
				}
				r, err := op.Sync(ctx, calls...)
				require.NoError(b, err, "Sync")
				require.Truef(b, r.AllSucceeded(), "Sync: %+v", r)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/call")
		})
	}
	b.Run("StartCallEnd", func(b *testing.B) {
		op := benchOp(b)
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			require.NoError(b, err)
			require.NoError(b, call.End(ctx, 1))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/call")
	})
}
