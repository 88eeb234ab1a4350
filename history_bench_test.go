//go:build unix

package ledger_test

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// historyOps is how many live and how many archived operations the
// directory of BenchmarkHistory holds.
const historyOps = 10_000

// BenchmarkHistory measures what a long history costs the things that
// look at the whole directory: opening a LocalLedger, one orphan sweep and
// `ledger ls`, in a directory of historyOps live operations (whose
// participants all left, so that the sweep reads but keeps them), first
// alone, then with historyOps archived ones (MaxBackups negative keeps
// them all). These costs should follow the live operations, not the
// archive: the two should cost the same.
//
//	go test -run '^$' -bench History -benchtime=5x -count=3 .
func BenchmarkHistory(b *testing.B) {
	for _, archived := range []int{0, historyOps} {
		b.Run(fmt.Sprintf("archived=%d", archived), func(b *testing.B) {
			dir := b.TempDir()
			historyDir(b, dir, historyOps, archived)
			benchmarkDir(b, dir)
		})
	}
}

// benchmarkDir times opening a ledger on dir, one sweep and ledger ls.
func benchmarkDir(b *testing.B, dir string) {
	o := ledger.Options{BasePath: dir, ParticipantID: "bench", NoSignalHandler: true, MaxBackups: -1}
	b.Run("open", func(b *testing.B) {
		var best minTime
		for b.Loop() {
			t0 := time.Now()
			l, err := ledger.NewLocalLedger(o)
			best.add(t0)
			require.NoError(b, err)
			b.StopTimer()
			l.Close() // also ends the sweep the ledger started
			b.StartTimer()
		}
		best.report(b)
	})
	b.Run("sweep", func(b *testing.B) {
		l, err := ledger.NewLocalLedger(o)
		require.NoError(b, err)
		defer l.Close()
		var best minTime
		var cpu minCPU
		for b.Loop() {
			t0, c0 := time.Now(), processCPU(b)
			ledger.Sweep(context.Background(), l)
			best.add(t0)
			cpu.add(processCPU(b) - c0)
		}
		best.report(b)
		cpu.report(b)
	})
	b.Run("ls", func(b *testing.B) {
		bin := ledgerBinary(b)
		var best minTime
		var cpu minCPU
		for b.Loop() {
			t0 := time.Now()
			cmd := exec.Command(bin, "ls", "--dir", dir)
			out, err := cmd.CombinedOutput()
			best.add(t0)
			require.NoErrorf(b, err, "ledger ls:\n%s", out)
			cpu.add(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime())
		}
		best.report(b)
		cpu.report(b)
	})
}

// minTime is the shortest of the timed runs: on a machine shared with
// other work, the least disturbed run.
type minTime time.Duration

func (m *minTime) add(since time.Time) {
	if d := minTime(time.Since(since)); *m == 0 || d < *m {
		*m = d
	}
}

func (m minTime) report(b *testing.B) {
	b.ReportMetric(float64(time.Duration(m).Microseconds())/1000, "min-ms")
}

// minCPU is the least CPU time (user and system) of the timed runs: less
// disturbed by other work than the time they took.
type minCPU time.Duration

func (m *minCPU) add(d time.Duration) {
	if *m == 0 || minCPU(d) < *m {
		*m = minCPU(d)
	}
}

func (m minCPU) report(b *testing.B) {
	b.ReportMetric(float64(time.Duration(m).Microseconds())/1000, "cpu-ms")
}

// processCPU returns the CPU time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// historyDir fills dir with live and archived operations, as a ledger
// writes them: every participant of a live one has left.
func historyDir(b *testing.B, dir string, live, archived int) {
	b.Helper()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "hist", NoSignalHandler: true, MaxBackups: -1})
	require.NoError(b, err)
	defer l.Close()
	ctx := context.Background()
	var g errgroup
	for w := range 8 {
		g.Go(func() error {
			for i := w; i < live+archived; i += 8 {
				op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
				if err != nil {
					return err
				}
				if i >= live {
					err = op.Complete(ctx)
				} else {
					err = op.Leave(ctx, ledger.LeaveOptions{})
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(b, g.Wait())
}

// errgroup runs functions and returns the first error (x/sync's, which
// the module does not require).
type errgroup struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

func (g *errgroup) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
		}
	})
}

func (g *errgroup) Wait() error {
	g.wg.Wait()
	return g.err
}
