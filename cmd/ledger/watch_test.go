package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// running is a command running in the background.
type running struct {
	out, err *syncWriter
	code     chan int
	cancel   context.CancelFunc // Ctrl-C
}

func start(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: &syncWriter{}, err: &syncWriter{}, code: make(chan int, 1), cancel: cancel}
	go func() { r.code <- run(ctx, args, r.out, r.err) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.code:
		case <-time.After(20 * time.Second):
			t.Errorf("ledger %v did not stop", args)
		}
	})
	return r
}

// waitOut waits until the output holds s, n times.
func (r *running) waitOut(t *testing.T, s string, n int) {
	t.Helper()
	waitWritten(t, r.out, fmt.Sprintf("%q %d times (stderr: %s)", s, n, r.err), func(out string) bool {
		return strings.Count(out, s) >= n
	})
}

// exit waits for the command to end and returns its exit code.
func (r *running) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.code:
		r.code <- code // for the cleanup
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("the command did not end:\n%s\nstderr: %s", r.out, r.err)
		return 0
	}
}

// cliSources are the ways the tests name the fixture's ledger.
func (f *cliFixture) sources() map[string][]string {
	return map[string][]string{
		"dir":    {"--dir", f.dir},
		"server": {"--server", f.url, "--token", f.token},
	}
}

// TestWatchRedrawsAtChanges: watch prints the operation again at each
// change, and ends with exit code 0 when it completes, 4 when it fails,
// 0 on Ctrl-C.
func TestWatchRedrawsAtChanges(t *testing.T) {
	f := newCLIFixture(t)
	ctx := context.Background()
	for name, src := range f.sources() {
		t.Run(name, func(t *testing.T) {
			op, err := f.alice.CreateOperation(ctx, ledger.CreateOptions{Description: "watched"})
			require.NoError(t, err)
			w := start(t, append([]string{"watch", op.ID()}, src...)...)
			w.waitOut(t, "CALLS (0)", 1)
			c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "deploy"})
			require.NoError(t, err)
			w.waitOut(t, "CALLS (1)", 1)
			assert.Contains(t, w.out.String(), "---\nledger watch "+op.ID(), "the second print follows a separator")
			assert.Contains(t, w.out.String(), "deploy")
			require.NoError(t, c.End(ctx, 1))
			w.waitOut(t, "CALLS (0)", 2)
			require.NoError(t, op.Complete(ctx))
			assert.Equal(t, exitOK, w.exit(t), "stderr: %s", w.err)
			assert.Contains(t, w.out.String(), "state        completed")

			failing, err := f.alice.CreateOperation(ctx, ledger.CreateOptions{Description: "doomed"})
			require.NoError(t, err)
			w = start(t, append([]string{"watch", failing.ID()}, src...)...)
			w.waitOut(t, "CALLS (0)", 1)
			c, err = ledger.StartCall[int](ctx, failing, ledger.CallOptions[int]{Description: "fragile"})
			require.NoError(t, err)
			w.waitOut(t, "CALLS (1)", 1)
			require.NoError(t, c.Fail(ctx, errors.New("it broke")))
			assert.Equal(t, exitFailed, w.exit(t), "stderr: %s", w.err)
			assert.Contains(t, w.out.String(), "it broke")
			assert.Contains(t, w.err.String(), "the operation failed")

			w = start(t, append([]string{"watch", f.live.ID()}, src...)...)
			w.waitOut(t, "CALLS (2)", 1)
			w.cancel()
			assert.Equal(t, exitOK, w.exit(t), "Ctrl-C; stderr: %s", w.err)
		})
	}
}

// TestWatchJSON: watch --json prints the state document on one line at
// each change.
func TestWatchJSON(t *testing.T) {
	f := newCLIFixture(t)
	ctx := context.Background()
	op, err := f.alice.CreateOperation(ctx, ledger.CreateOptions{Description: "json"})
	require.NoError(t, err)
	w := start(t, "watch", "--json", "--dir", f.dir, op.ID())
	w.waitOut(t, "\n", 1)
	require.NoError(t, op.Log(ctx, ledger.LogInfo, "a log line changes the journal, not the state"))
	_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "step"})
	require.NoError(t, err)
	w.waitOut(t, `"callId"`, 1)
	require.NoError(t, op.SetAbortFlag(ctx, true))
	w.waitOut(t, `"aborted":true`, 1)
	for _, line := range strings.Split(strings.TrimSuffix(w.out.String(), "\n"), "\n") {
		assert.True(t, strings.HasPrefix(line, `{"operationId":"`+op.ID()), line)
	}
}

// TestWatchList: watch without an operation prints the live operations
// again when one is created, until Ctrl-C.
func TestWatchList(t *testing.T) {
	f := newCLIFixture(t)
	ctx := context.Background()
	for name, src := range f.sources() {
		t.Run(name, func(t *testing.T) {
			w := start(t, append([]string{"watch"}, src...)...)
			w.waitOut(t, f.live.ID(), 1)
			op, err := f.alice.CreateOperation(ctx, ledger.CreateOptions{Description: "new on " + name})
			require.NoError(t, err)
			w.waitOut(t, op.ID(), 1)
			assert.Contains(t, w.out.String(), "new on "+name)
			require.NoError(t, op.Complete(ctx))
			waitWritten(t, w.out, "the completed operation to leave the list", func(out string) bool {
				last := out[strings.LastIndex(out, "---"):]
				return strings.Contains(last, f.live.ID()) && !strings.Contains(last, op.ID())
			})
			w.cancel()
			assert.Equal(t, exitOK, w.exit(t), "stderr: %s", w.err)
		})
	}
}

// TestLogFollow: log -f prints the lines as they are written, each once,
// and ends when the operation does.
func TestLogFollow(t *testing.T) {
	f := newCLIFixture(t)
	ctx := context.Background()
	for name, src := range f.sources() {
		t.Run(name, func(t *testing.T) {
			op, err := f.alice.CreateOperation(ctx, ledger.CreateOptions{Description: "followed"})
			require.NoError(t, err)
			w := start(t, append([]string{"log", "-f", op.ID()}, src...)...)
			w.waitOut(t, "OPERATION_CREATED followed", 1)
			require.NoError(t, op.Log(ctx, ledger.LogWarning, "first news"))
			w.waitOut(t, "[WARNING] alice first news", 1)
			require.NoError(t, op.Log(ctx, ledger.LogError, "second news"))
			w.waitOut(t, "[ERROR] alice second news", 1)
			require.NoError(t, op.Complete(ctx))
			assert.Equal(t, exitOK, w.exit(t), "stderr: %s", w.err)
			out := w.out.String()
			assert.Equal(t, 1, strings.Count(out, "first news"), out)
			assert.Equal(t, 1, strings.Count(out, "OPERATION_CREATED"), out)
			assert.True(t, strings.HasSuffix(out, "OPERATION_COMPLETED\n"), out)
		})
	}
}
