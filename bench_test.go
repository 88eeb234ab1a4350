package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tomdist/ledger"
)

// benchFrames are the numbers of active call frames the store benchmarks
// run at.
var benchFrames = []int{1, 100, 1000}

// benchOperation opens a local ledger in a fresh directory and creates an
// operation holding frames-1 active calls, so that a call started by the
// benchmark is the frames-th. It returns the operation and its state file.
func benchOperation(b *testing.B, frames int) (*ledger.Operation, string) {
	b.Helper()
	dir := b.TempDir()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "bench", NoSignalHandler: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	ctx := context.Background()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "benchmark"})
	if err != nil {
		b.Fatal(err)
	}
	for range frames - 1 {
		if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "background work"}); err != nil {
			b.Fatal(err)
		}
	}
	return op, filepath.Join(dir, op.ID()+".operation.json")
}

// BenchmarkCallRoundTrip measures StartCall + End on a local ledger: two
// complete ledger changes (lock, read, modify, write, rename, log).
func BenchmarkCallRoundTrip(b *testing.B) {
	for _, n := range benchFrames {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			op, path := benchOperation(b, n)
			ctx := context.Background()
			opts := ledger.CallOptions[int]{Description: "background work"}
			for b.Loop() {
				call, err := ledger.StartCall[int](ctx, op, opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := call.End(ctx, 1); err != nil {
					b.Fatal(err)
				}
			}
			if fi, err := os.Stat(path); err == nil {
				b.ReportMetric(float64(fi.Size()), "state-bytes")
			}
		})
	}
}

// BenchmarkStoreFloor measures the least any atomic ledger change costs,
// with plain system calls and no store code: flock, read the state file,
// write a new temp file of the same size, rename it over the state,
// unlock. The file is a real state with the given number of active frames
// plus one (what a round trip of BenchmarkCallRoundTrip writes at most).
func BenchmarkStoreFloor(b *testing.B) {
	for _, n := range benchFrames {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			_, src := benchOperation(b, n+1)
			content, err := os.ReadFile(src)
			if err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			path := filepath.Join(dir, "floor.operation.json")
			if err := os.WriteFile(path, content, 0o644); err != nil {
				b.Fatal(err)
			}
			lock, err := syscall.Open(path+".lock", syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer syscall.Close(lock)
			buf := make([]byte, len(content))
			for b.Loop() {
				if err := floorChange(lock, path, path+".tmp", buf, content); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(content)), "state-bytes")
		})
	}
}

// floorChange is one raw atomic change: flock, read path, write tmp,
// rename tmp over path, unlock.
func floorChange(lock int, path, tmp string, buf, content []byte) error {
	if err := syscall.Flock(lock, syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(lock, syscall.LOCK_UN)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Size != int64(len(buf)) {
		syscall.Close(fd)
		return fmt.Errorf("stat: size %d, %v", st.Size, err)
	}
	n, err := syscall.Read(fd, buf)
	syscall.Close(fd)
	if err != nil || n != len(buf) {
		return fmt.Errorf("read %d of %d bytes: %v", n, len(buf), err)
	}
	fd, err = syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	n, err = syscall.Write(fd, content)
	syscall.Close(fd)
	if err != nil || n != len(content) {
		return fmt.Errorf("wrote %d of %d bytes: %v", n, len(content), err)
	}
	return syscall.Rename(tmp, path)
}

// BenchmarkRoundTripOverFloor alternates one floor change (as in
// BenchmarkStoreFloor) and one call round trip (as in
// BenchmarkCallRoundTrip) on the same state size, so that both meet the
// same load on a shared machine, and reports their ratio.
func BenchmarkRoundTripOverFloor(b *testing.B) {
	for _, n := range benchFrames {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			op, src := benchOperation(b, n)
			ctx := context.Background()
			opts := ledger.CallOptions[int]{Description: "background work"}
			call, err := ledger.StartCall[int](ctx, op, opts)
			if err != nil {
				b.Fatal(err)
			}
			content, err := os.ReadFile(src) // the largest state a round trip writes
			if err != nil {
				b.Fatal(err)
			}
			if err := call.End(ctx, 0); err != nil {
				b.Fatal(err)
			}
			path := filepath.Join(b.TempDir(), "floor.operation.json")
			if err := os.WriteFile(path, content, 0o644); err != nil {
				b.Fatal(err)
			}
			lock, err := syscall.Open(path+".lock", syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer syscall.Close(lock)
			buf := make([]byte, len(content))
			var floor, trip time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := floorChange(lock, path, path+".tmp", buf, content); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				call, err := ledger.StartCall[int](ctx, op, opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := call.End(ctx, 1); err != nil {
					b.Fatal(err)
				}
				floor += t1.Sub(t0)
				trip += time.Since(t1)
			}
			b.ReportMetric(float64(floor.Microseconds())/float64(b.N), "floor-µs")
			b.ReportMetric(float64(trip.Microseconds())/float64(b.N), "roundtrip-µs")
			b.ReportMetric(float64(trip)/float64(floor), "x-floor")
		})
	}
}
