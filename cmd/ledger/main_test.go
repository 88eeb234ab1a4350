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
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("ledger %v = %d, %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
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
		if code != exitError || !strings.Contains(stderr, tc.want) {
			t.Errorf("ledger %v = %d, %q; want %d and %q", tc.args, code, stderr, exitError, tc.want)
		}
	}
}

// syncWriter is a writer safe for the command and the test.
type syncWriter struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
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
	if err != nil {
		t.Fatalf("no listening line: %v; stderr %s", err, stderr)
	}
	go io.Copy(io.Discard, pr)
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	res, err := http.Get(url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Service string }
	json.NewDecoder(res.Body).Decode(&st)
	res.Body.Close()
	if st.Service != "tom_dist_ledger" {
		t.Fatalf("/status service %q", st.Service)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("serve exited %d; stderr %s", code, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(stderr.String(), "path=/status") || !strings.Contains(stderr.String(), "level=DEBUG") {
		t.Fatalf("no debug line for the request:\n%s", stderr)
	}
}

// TestInspect runs ls, show, log, abort and prune over a directory that a
// local ledger wrote.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", HeartbeatInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "finished work"})
	if err != nil {
		t.Fatal(err)
	}
	if err := done.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	live, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "ongoing\nwork"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.StartCall[int](ctx, live, ledger.CallOptions[int]{Description: "step"}); err != nil {
		t.Fatal(err)
	}

	code, out, _ := runCmd(t, "ls", "--dir", dir)
	if code != 0 || !strings.Contains(out, live.ID()) || strings.Contains(out, done.ID()) || !strings.Contains(out, "ongoing work") {
		t.Fatalf("ls = %d:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "ls", "--all", "--dir", dir)
	if code != 0 || !strings.Contains(out, live.ID()) || !strings.Contains(out, done.ID()) || !strings.Contains(out, "completed") {
		t.Fatalf("ls --all = %d:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "show", "--json", live.ID(), "--dir", dir)
	var d ledger.Data
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.OperationID != live.ID() || len(d.CallFrames) != 1 {
		t.Fatalf("show = %d:\n%s", code, out)
	}
	code, out, _ = runCmd(t, "log", "--dir", dir, done.ID())
	if code != 0 || !strings.Contains(out, "OPERATION_CREATED") || !strings.Contains(out, "OPERATION_COMPLETED") {
		t.Fatalf("log = %d:\n%s", code, out)
	}
	if err := live.Log(ctx, ledger.LogDebug, "fine detail"); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "log", "--debug", "--dir", dir, live.ID())
	if code != 0 || !strings.Contains(out, "fine detail") {
		t.Fatalf("log --debug = %d:\n%s", code, out)
	}

	code, out, _ = runCmd(t, "abort", "--dir", dir, live.ID())
	if code != 0 || !strings.Contains(out, "aborted") {
		t.Fatalf("abort = %d:\n%s", code, out)
	}
	if aborted, err := live.CheckAbort(ctx); err != nil || !aborted {
		t.Fatalf("the participant sees aborted=%v, %v", aborted, err)
	}
	code, out, _ = runCmd(t, "log", "--dir", dir, live.ID())
	if code != 0 || !strings.Contains(out, "[WARNING] ledger-cli ABORT_SET true") {
		t.Fatalf("log after abort:\n%s", out)
	}

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
		if code, _, stderr := runCmd(t, c.args...); code != c.code || stderr == "" {
			t.Errorf("ledger %v = %d, %q; want %d and an error", c.args, code, stderr, c.code)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("ls created the missing directory: %v", err)
	}

	code, out, _ = runCmd(t, "prune", "--dir", dir, "--keep", "1")
	if code != 0 || !strings.Contains(out, "pruned 0 archived operations, 1 kept") {
		t.Fatalf("prune --keep 1 = %d: %s", code, out)
	}
	code, out, _ = runCmd(t, "prune", "--dir", dir, "--keep", "0")
	if code != 0 || !strings.Contains(out, "pruned 1 archived operations, 0 kept") {
		t.Fatalf("prune --keep 0 = %d: %s", code, out)
	}
	if code, _, _ := runCmd(t, "prune", "--dir", dir, "--keep", "-1"); code != exitUsage {
		t.Fatalf("prune --keep -1 = %d", code)
	}
}
