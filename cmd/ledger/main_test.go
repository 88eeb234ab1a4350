package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// runCmd runs the command line and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LEDGER_DIR", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage:"},
		{[]string{"explode"}, "unknown command"},
		{[]string{"serve"}, "--dir (or $LEDGER_DIR) is required"},
		{[]string{"show", "--dir", dir}, "want ID, got 0"},
		{[]string{"ls", "--dir", dir, "extra"}, "want no arguments"},
		{[]string{"ls", "--dir", dir, "--bogus"}, "flag provided but not defined"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		assert.Equalf(t, exitUsage, code, "ledger %v: %q", tc.args, stderr)
		assert.Containsf(t, stderr, tc.want, "ledger %v", tc.args)
	}
}

func TestServeRefusals(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ledger.TokenEnv, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--dir", dir, "--addr", "0.0.0.0:0"}, "without a token"},
		{[]string{"serve", "--dir", dir, "--addr", ":0"}, "without a token"},
		{[]string{"serve", "--dir", dir, "--tls-cert", "c.pem"}, "go together"},
		{[]string{"serve", "--dir", dir, "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, "no such file"},
		{[]string{"serve", "--dir", filepath.Join(dir, "f", "\x00")}, "ledger serve:"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		assert.Equalf(t, exitError, code, "ledger %v: %q", tc.args, stderr)
		assert.Containsf(t, stderr, tc.want, "ledger %v", tc.args)
	}
}

// syncWriter is a writer safe for the command and the test.
type syncWriter struct {
	mu    sync.Mutex // guards b, wrote
	b     strings.Builder
	wrote chan struct{} // closed, and replaced, at every write
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wrote != nil {
		close(w.wrote)
		w.wrote = nil
	}
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// next returns what was written and a channel closed at the next write.
func (w *syncWriter) next() (string, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wrote == nil {
		w.wrote = make(chan struct{})
	}
	return w.b.String(), w.wrote
}

// waitWritten waits until what w holds satisfies cond, woken by each
// write, and fails the test after 10s.
func waitWritten(t *testing.T, w *syncWriter, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s, wrote := w.next()
		if cond(s) {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("timed out waiting for %s:\n%s", what, s)
		}
	}
}

// TestServeAndShutdown serves on a free loopback port with --debug, takes
// a request, and stops when its context ends, as on SIGTERM.
func TestServeAndShutdown(t *testing.T) {
	dir := t.TempDir()
	pr, pw := io.Pipe()
	stderr := &syncWriter{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--debug"}, pw, stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoErrorf(t, err, "no listening line; stderr %s", stderr)
	go io.Copy(io.Discard, pr)
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	require.Truef(t, ok, "first line %q", line)
	require.Truef(t, strings.HasPrefix(url, "http://127.0.0.1:"), "first line %q", line)
	res, err := http.Get(url + "/status")
	require.NoError(t, err)
	var st struct{ Service string }
	json.NewDecoder(res.Body).Decode(&st)
	res.Body.Close()
	require.Equal(t, "tom_dist_ledger", st.Service, "/status service")
	cancel()
	select {
	case code := <-done:
		require.Equalf(t, exitOK, code, "serve exit code; stderr %s", stderr)
	case <-time.After(20 * time.Second):
		require.Fail(t, "serve did not stop")
	}
	assert.Contains(t, stderr.String(), "path=/status", "no debug line for the request")
	assert.Contains(t, stderr.String(), "level=DEBUG", "no debug line for the request")
}

// TestInspect runs ls, show, log, abort and prune over a directory that a
// local ledger wrote.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", HeartbeatInterval: time.Minute})
	require.NoError(t, err)
	defer l.Close()
	done, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "finished work"})
	require.NoError(t, err)
	require.NoError(t, done.Complete(ctx))
	live, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "ongoing\nwork"})
	require.NoError(t, err)
	_, err = ledger.StartCall[int](ctx, live, ledger.CallOptions[int]{Description: "step"})
	require.NoError(t, err)

	code, out, _ := runCmd(t, "ls", "--dir", dir)
	require.Equalf(t, 0, code, "ls:\n%s", out)
	require.Contains(t, out, live.ID(), "ls")
	require.NotContains(t, out, done.ID(), "ls")
	require.Contains(t, out, "ongoing work", "ls")
	code, out, _ = runCmd(t, "ls", "--all", "--dir", dir)
	require.Equalf(t, 0, code, "ls --all:\n%s", out)
	require.Contains(t, out, live.ID(), "ls --all")
	require.Contains(t, out, done.ID(), "ls --all")
	require.Contains(t, out, "completed", "ls --all")
	code, out, _ = runCmd(t, "show", "--json", live.ID(), "--dir", dir)
	require.Equalf(t, 0, code, "show --json:\n%s", out)
	var d ledger.Data
	require.NoErrorf(t, json.Unmarshal([]byte(out), &d), "show:\n%s", out)
	require.Equal(t, live.ID(), d.OperationID, "show")
	require.Len(t, d.CallFrames, 1, "show")
	code, out, _ = runCmd(t, "log", "--dir", dir, done.ID())
	require.Equalf(t, 0, code, "log:\n%s", out)
	require.Contains(t, out, "OPERATION_CREATED", "log")
	require.Contains(t, out, "OPERATION_COMPLETED", "log")
	require.NoError(t, live.Log(ctx, ledger.LogDebug, "fine detail"))
	code, out, _ = runCmd(t, "log", "--debug", "--dir", dir, live.ID())
	require.Equalf(t, 0, code, "log --debug:\n%s", out)
	require.Contains(t, out, "fine detail", "log --debug")

	code, out, _ = runCmd(t, "abort", "--dir", dir, live.ID())
	require.Equalf(t, 0, code, "abort:\n%s", out)
	require.Contains(t, out, "aborted", "abort")
	aborted, err := live.CheckAbort(ctx)
	require.NoError(t, err, "CheckAbort")
	require.True(t, aborted, "the participant does not see the abort")
	code, out, _ = runCmd(t, "log", "--dir", dir, live.ID())
	require.Equalf(t, 0, code, "log after abort:\n%s", out)
	require.Contains(t, out, "[WARNING] ledger-cli ABORT_SET true", "log after abort")

	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"show", "--dir", dir, "20240101T00:00:00.000-nobody-00000000"}, exitNotFound},
		{[]string{"show", "--dir", dir, "../../etc/passwd"}, exitUsage},
		{[]string{"log", "--dir", dir, "../x"}, exitUsage},
		{[]string{"abort", "--dir", dir, done.ID()}, exitError},
		{[]string{"ls", "--dir", filepath.Join(dir, "missing")}, exitError},
	} {
		code, _, stderr := runCmd(t, c.args...)
		assert.Equalf(t, c.code, code, "ledger %v: %q", c.args, stderr)
		assert.NotEmptyf(t, stderr, "ledger %v: no error message", c.args)
	}
	_, err = os.Stat(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist, "ls created the missing directory")

	code, out, _ = runCmd(t, "prune", "--dir", dir, "--keep", "1")
	require.Equalf(t, 0, code, "prune --keep 1: %s", out)
	require.Contains(t, out, "pruned 0 archived operations, 1 kept", "prune --keep 1")
	code, out, _ = runCmd(t, "prune", "--dir", dir, "--keep", "0")
	require.Equalf(t, 0, code, "prune --keep 0: %s", out)
	require.Contains(t, out, "pruned 1 archived operations, 0 kept", "prune --keep 0")
	code, _, _ = runCmd(t, "prune", "--dir", dir, "--keep", "-1")
	assert.Equal(t, exitUsage, code, "prune --keep -1")
}
