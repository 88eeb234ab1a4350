package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
// write a temp file of the same size, rename it over the state, unlock. The
// file is a real state with the given number of active frames (one more
// than the smallest state a round trip of BenchmarkCallRoundTrip writes).
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
			tmp := path + ".tmp"
			if err := os.WriteFile(path, content, 0o644); err != nil {
				b.Fatal(err)
			}
			lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer lock.Close()
			buf := make([]byte, len(content)+1)
			for b.Loop() {
				if err := floorChange(int(lock.Fd()), path, tmp, buf, content); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(content)), "state-bytes")
		})
	}
}

// floorChange is one raw atomic change: flock, read path, write tmp,
// rename tmp over path, unlock.
func floorChange(lockFD int, path, tmp string, buf, content []byte) error {
	if err := syscall.Flock(lockFD, syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(lockFD, syscall.LOCK_UN)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	n, err := f.Read(buf)
	f.Close()
	if err != nil || n != len(content) {
		return fmt.Errorf("read %d of %d bytes: %v", n, len(content), err)
	}
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := w.Write(content); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
