package ledger_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tomdist/ledger"
)

// setupRemoteHTTPTest serves a fresh directory with NewServer on an
// httptest server on 127.0.0.1.
func setupRemoteHTTPTest(t testing.TB) (func(testing.TB, ledger.Options) ledger.Ledger, location) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	return remoteOpener(url, ""), location{dir: dir, url: url}
}

// startHTTPTestServer serves o on an httptest server on loopback and
// returns its URL; the server stops when the test ends.
func startHTTPTestServer(t testing.TB, o ledger.ServerOptions) string {
	t.Helper()
	srv := ledger.NewServer(o)
	if err := srv.Err(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL
}

// setupRemoteBinary serves a fresh directory with the real `ledger serve`
// binary on 127.0.0.1.
func setupRemoteBinary(t testing.TB) (func(testing.TB, ledger.Options) ledger.Ledger, location) {
	dir := t.TempDir()
	url, _ := startBinaryServer(t, dir)
	return remoteOpener(url, ""), location{dir: dir, url: url}
}

// remoteOpener connects participants to the server at url.
func remoteOpener(url, token string) func(testing.TB, ledger.Options) ledger.Ledger {
	return func(t testing.TB, o ledger.Options) ledger.Ledger {
		t.Helper()
		o.ServerURL = url
		if o.Token == "" {
			o.Token = token
		}
		l, err := ledger.Connect(context.Background(), o)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
}

var (
	buildMu  sync.Mutex
	buildDir string // holds the ledger binary; removed by removeBuilds
	buildErr error
)

// ledgerBinary builds cmd/ledger once per test run and returns its path.
func ledgerBinary(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" && buildErr == nil {
		buildDir, buildErr = os.MkdirTemp("", "ledger-test-bin-")
		if buildErr == nil {
			gotool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
			if p, err := exec.LookPath("go"); err == nil {
				gotool = p
			}
			cmd := exec.Command(gotool, "build", "-o", filepath.Join(buildDir, "ledger"), "./cmd/ledger")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/ledger: %v\n%s", err, out)
			}
		}
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "ledger")
}

// removeBuilds deletes what ledgerBinary built; TestMain calls it.
func removeBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// binaryServer is a running `ledger serve` process.
type binaryServer struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // of Wait, once done is closed
}

// lockedBuffer is a bytes.Buffer safe for the process's writer and the
// test's reader.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startBinaryServer runs `ledger serve --dir dir --addr 127.0.0.1:0 args...`
// and returns its URL once it listens. The process gets SIGTERM when the
// test ends (SIGKILL if it does not stop), and, where the system has a
// parent-death signal, SIGKILL if the test binary dies first.
func startBinaryServer(t testing.TB, dir string, args ...string) (string, *binaryServer) {
	t.Helper()
	bin := ledgerBinary(t)
	cmd := exec.Command(bin, append([]string{"serve", "--dir", dir, "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), ledger.TokenEnv+"=")
	cmd.SysProcAttr = dieWithTestBinary()
	bs := &binaryServer{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = bs.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
		bs.err = cmd.Wait()
		close(bs.done)
	}()
	t.Cleanup(func() { bs.stop(t) })
	select {
	case line := <-lines:
		url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok {
			t.Fatalf("ledger serve printed %q, stderr:\n%s", line, bs.stderr)
		}
		return url, bs
	case <-time.After(30 * time.Second):
		t.Fatalf("ledger serve did not start; stderr:\n%s", bs.stderr)
	}
	return "", nil
}

// stop sends SIGTERM and waits for the process to shut down gracefully
// (exit status 0), then SIGKILL after 10s.
func (bs *binaryServer) stop(t testing.TB) {
	select {
	case <-bs.done:
		return
	default:
	}
	bs.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-bs.done:
		if bs.err != nil {
			t.Errorf("ledger serve after SIGTERM: %v (want a graceful exit 0); stderr:\n%s", bs.err, bs.stderr)
		}
	case <-time.After(10 * time.Second):
		bs.cmd.Process.Kill()
		<-bs.done
		t.Errorf("ledger serve ignored SIGTERM; stderr:\n%s", bs.stderr)
	}
}

// TestRemoteErrorsMatchLocal checks that every backend reports the same
// conditions with the same sentinels and typed errors.
func TestRemoteErrorsMatchLocal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.Open("alice", ledger.Options{})
		b := e.Open("bob", ledger.Options{})

		if _, err := b.JoinOperation(ctx, "20240101T00:00:00.000-nobody-00000000", ledger.JoinOptions{}); !errors.Is(err, ledger.ErrOperationNotFound) {
			t.Fatalf("join unknown: %v, want ErrOperationNotFound", err)
		}
		if _, err := b.JoinOperation(ctx, "../escape", ledger.JoinOptions{}); !errors.Is(err, ledger.ErrInvalidID) {
			t.Fatalf("join ../escape: %v, want ErrInvalidID", err)
		}

		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "errors"})
		if err != nil {
			t.Fatal(err)
		}
		if err := op.DeleteCallFrame(ctx, "call_nobody_1_0000"); !errors.Is(err, ledger.ErrCallNotFound) {
			t.Fatalf("delete unknown frame: %v, want ErrCallNotFound", err)
		}
		if err := op.CreateCallFrame(ctx, "raw_1"); err != nil {
			t.Fatal(err)
		}
		if err := op.CreateCallFrame(ctx, "raw_1"); !errors.Is(err, ledger.ErrCallExists) {
			t.Fatalf("create a frame twice: %v, want ErrCallExists", err)
		}
		if err := op.DeleteCallFrame(ctx, "raw_1"); err != nil {
			t.Fatal(err)
		}
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "doomed"})
		if err != nil {
			t.Fatal(err)
		}
		if err := call.Fail(ctx, errors.New("disk full")); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, op.Failed(), 5*time.Second, "Failed after Fail")

		_, err = b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		var ofe *ledger.OperationFailedError
		if !errors.As(err, &ofe) || !errors.Is(err, ledger.ErrOperationFailed) {
			t.Fatalf("join failed operation: %v, want *OperationFailedError", err)
		}
		if ofe.Info.OperationID != op.ID() || !strings.Contains(ofe.Info.Reason, "disk full") ||
			ofe.Info.ParticipantID != "alice" || len(ofe.Info.CrashedCallIDs) != 1 || ofe.Info.CrashedCallIDs[0] != call.ID() ||
			ofe.Info.FailedAt.IsZero() {
			t.Fatalf("failure info = %+v", ofe.Info)
		}
	})
}

// TestRemoteOperationLifecycle runs the rest of the Operation API over each
// backend: log, abort, state, temp resources, raw frames, spawned calls.
func TestRemoteOperationLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.Open("alice", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "life"})
		if err != nil {
			t.Fatal(err)
		}
		if err := op.Log(ctx, ledger.LogWarning, "careful\nnow"); err != nil {
			t.Fatal(err)
		}
		if err := op.Log(ctx, ledger.LogDebug, "details"); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(t.TempDir(), "scratch")
		if err := op.RegisterTempResource(ctx, tmp); err != nil {
			t.Fatal(err)
		}
		if err := op.CreateCallFrame(ctx, "call_raw_1_abcd"); err != nil {
			t.Fatal(err)
		}
		d, err := op.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.TempResources) != 1 || d.TempResources[0].Path != tmp || d.TempResources[0].ParticipantID != "alice" {
			t.Fatalf("temp resources = %+v", d.TempResources)
		}
		if len(d.CallFrames) != 1 || d.CallFrames[0].CallID != "call_raw_1_abcd" || d.CallFrames[0].FailOnCrash {
			t.Fatalf("frames = %+v", d.CallFrames)
		}
		if err := op.UnregisterTempResource(ctx, tmp); err != nil {
			t.Fatal(err)
		}
		if err := op.DeleteCallFrame(ctx, "call_raw_1_abcd"); err != nil {
			t.Fatal(err)
		}
		contained, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Description: "side", Contained: true})
		if err != nil {
			t.Fatal(err)
		}
		if d, err = op.State(ctx); err != nil || len(d.CallFrames) != 1 || d.CallFrames[0].FailOnCrash {
			t.Fatalf("contained frame: %+v, %v", d, err)
		}
		if err := contained.Fail(ctx, errors.New("meh")); err != nil {
			t.Fatal(err)
		}
		if err := op.SetAbortFlag(ctx, true); err != nil {
			t.Fatal(err)
		}
		if !op.IsAborted() {
			t.Fatal("not aborted after SetAbortFlag")
		}
		if aborted, err := op.CheckAbort(ctx); err != nil || !aborted {
			t.Fatalf("CheckAbort = %v, %v", aborted, err)
		}
		select {
		case <-op.Failed():
			t.Fatal("a contained failure failed the operation")
		default:
		}
		if err := op.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		log, err := os.ReadFile(filepath.Join(e.dir, "backup", op.ID(), "operation.log"))
		if err != nil {
			t.Fatal(err)
		}
		evs := count(logEvents(string(log)))
		for _, ev := range []string{"OPERATION_CREATED", "CALL_STARTED", "CALL_FAILED", "ABORT_SET", "OPERATION_COMPLETED"} {
			if evs[ev] != 1 {
				t.Errorf("%s logged %d times:\n%s", ev, evs[ev], log)
			}
		}
		if !strings.Contains(string(log), `[WARNING] alice careful\nnow`) {
			t.Errorf("log line missing:\n%s", log)
		}
		debug, err := os.ReadFile(filepath.Join(e.dir, "backup", op.ID(), "operation.debug.log"))
		if err != nil || !strings.Contains(string(debug), "[DEBUG] alice details") {
			t.Errorf("debug log: %v\n%s", err, debug)
		}
	})
}

// flakyProxy forwards to a server but drops the connection of the first
// drop requests to each path in paths, and counts requests per path.
type flakyProxy struct {
	next  http.Handler
	drop  int
	paths map[string]bool

	mu    sync.Mutex // guards count
	count map[string]int
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.count[r.URL.Path]++
	n := p.count[r.URL.Path]
	p.mu.Unlock()
	if p.paths[r.URL.Path] && n <= p.drop {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	p.next.ServeHTTP(w, r)
}

func (p *flakyProxy) requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[path]
}

// TestRemoteRetriesEveryRequest drops connections: every request is
// retried with its idempotency key, so State and StartCall succeed, and
// the StartCall that the server carried out before its connection was
// dropped is not carried out twice.
func TestRemoteRetriesEveryRequest(t *testing.T) {
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir()})
	defer srv.Close()
	proxy := &flakyProxy{next: srv, drop: 2, paths: map[string]bool{"/operation/state": true, "/call/start": true}, count: map[string]int{}}
	ts := httptest.NewServer(proxy)
	defer ts.Close()
	ctx := context.Background()

	l, err := ledger.NewRemoteClient(ctx, ledger.Options{
		ParticipantID: "retrier", ServerURL: ts.URL,
		Retry: ledger.RetryPolicy{Attempts: 3, Backoff: time.Millisecond},
	})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	_, err = op.State(ctx)
	require.NoError(t, err, "State with 2 dropped connections and 3 attempts")
	assert.Equal(t, 3, proxy.requests("/operation/state"), "two dropped, one answered")
	c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err, "StartCall with 2 dropped connections and 3 attempts")
	assert.Equal(t, 3, proxy.requests("/call/start"), "two dropped, one answered")
	d, err := op.State(ctx)
	require.NoError(t, err)
	require.Len(t, d.CallFrames, 1)
	assert.Equal(t, c.ID(), d.CallFrames[0].CallID)

	// With one attempt, nothing is retried.
	one, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "once", ServerURL: ts.URL, Retry: ledger.RetryPolicy{Attempts: 1}})
	require.NoError(t, err)
	defer one.Close()
	proxy.mu.Lock()
	proxy.count = map[string]int{}
	proxy.mu.Unlock()
	joined, err := one.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	_, err = joined.State(ctx)
	require.Error(t, err, "State with Attempts 1 over a dropped connection")
	var re *ledger.RemoteError
	assert.False(t, errors.As(err, &re), "a connection error came back as %v", re)
	// net/http sends a request with an Idempotency-Key once more by itself
	// when a reused connection turns out closed; the client does not.
	assert.LessOrEqual(t, proxy.requests("/operation/state"), 2)
}

// TestRemoteRequestTimeout checks that a hung server does not hang the
// client: the attempt ends at RequestTimeout with DeadlineExceeded.
func TestRemoteRequestTimeout(t *testing.T) {
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir()})
	defer srv.Close()
	release := make(chan struct{})
	var hung atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/operation/state" {
			hung.Add(1)
			<-release
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer ts.Close()
	defer close(release)
	ctx := context.Background()
	l, err := ledger.NewRemoteClient(ctx, ledger.Options{
		ParticipantID: "patient", ServerURL: ts.URL,
		RequestTimeout: 50 * time.Millisecond, Retry: ledger.RetryPolicy{Attempts: 2, Backoff: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := op.State(ctx); !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("State against a hung server: %v (ctx %v), want the request's DeadlineExceeded", err, ctx.Err())
	}
	if n := hung.Load(); n != 2 {
		t.Fatalf("hung requests = %d, want 2 attempts", n)
	}
}

// TestRemoteServerRestart stops the server in the middle of an operation
// and starts a new one on the same address and directory: the clients go
// on, because the state is on disk.
func TestRemoteServerRestart(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	stop := serveOn(t, dir, ln)
	ctx := context.Background()
	url := "http://" + addr
	a, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "alice", ServerURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "bob", ServerURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "restart"})
	if err != nil {
		t.Fatal(err)
	}
	bop, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, err := ledger.StartCall[int](ctx, bop, ledger.CallOptions[int]{Description: "spans the restart"})
	if err != nil {
		t.Fatal(err)
	}

	stop()
	if _, err := bop.State(ctx); err == nil {
		t.Fatal("State succeeded with the server down")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	serveOn(t, dir, ln)

	if err := before.End(ctx, 1); err != nil {
		t.Fatalf("End after restart: %v", err)
	}
	for i := range 3 {
		c, err := ledger.StartCall[int](ctx, bop, ledger.CallOptions[int]{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.End(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := bop.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := op.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(dir, "backup", op.ID(), "operation.log"))
	if err != nil {
		t.Fatal(err)
	}
	evs := count(logEvents(string(log)))
	if evs["CALL_STARTED"] != 4 || evs["CALL_ENDED"] != 4 || evs["OPERATION_COMPLETED"] != 1 {
		t.Fatalf("events %v:\n%s", evs, log)
	}
}

// serveOn serves dir on ln with Server.Serve and returns a function that
// stops it and waits; it is also stopped when the test ends.
func serveOn(t testing.TB, dir string, ln net.Listener) func() {
	t.Helper()
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestRemoteTokenAndTLS runs the binary with a token and a certificate:
// a client with both works, a wrong token is ErrUnauthorized-coded, and a
// client that does not trust the certificate finds no server.
func TestRemoteTokenAndTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSignedCert(t)
	url, _ := startBinaryServer(t, dir, "--token", "s3cret", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("url %q", url)
	}
	ctx := context.Background()
	tc := &tls.Config{RootCAs: pool}

	good, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "good", ServerURL: url, Token: "s3cret", TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	op, err := good.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	bad, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "bad", ServerURL: url, Token: "guess", TLSConfig: tc})
	if err != nil {
		t.Fatal(err) // /status needs no token
	}
	defer bad.Close()
	_, err = bad.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	var re *ledger.RemoteError
	if !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized || re.Code != "unauthorized" {
		t.Fatalf("join with a wrong token: %v", err)
	}

	if _, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "naive", ServerURL: url, Token: "s3cret", Retry: ledger.RetryPolicy{Attempts: 1}}); !errors.Is(err, ledger.ErrNoServer) {
		t.Fatalf("client without the CA: %v, want ErrNoServer", err)
	}
	if err := op.Complete(ctx); err != nil {
		t.Fatal(err)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns them with a pool that trusts the certificate.
func selfSignedCert(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ledger test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestRemoteOptionsRejected checks that bad remote options are refused
// with an error naming the field, before any request.
func TestRemoteOptionsRejected(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    ledger.Options
		want string
	}{
		{"negative timeout", ledger.Options{ServerURL: "http://127.0.0.1:1", RequestTimeout: -1}, "Options.RequestTimeout"},
		{"negative attempts", ledger.Options{ServerURL: "http://127.0.0.1:1", Retry: ledger.RetryPolicy{Attempts: -1}}, "Options.Retry.Attempts"},
		{"negative backoff", ledger.Options{ServerURL: "http://127.0.0.1:1", Retry: ledger.RetryPolicy{Backoff: -1}}, "Options.Retry.Backoff"},
		{"bad scheme", ledger.Options{ServerURL: "ftp://127.0.0.1:1"}, "http:// or https://"},
		{"no host", ledger.Options{ServerURL: "http:///x"}, "http:// or https://"},
		{"both backends", ledger.Options{ServerURL: "http://127.0.0.1:1", BasePath: "/tmp/x"}, "both set"},
		{"big subnet", ledger.Options{Discovery: ledger.DiscoveryOptions{Subnets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/16")}}}, "Options.Discovery.Subnets"},
		{"bad port", ledger.Options{Discovery: ledger.DiscoveryOptions{Ports: []int{70000}}}, "Options.Discovery.Ports"},
		{"negative probe timeout", ledger.Options{Discovery: ledger.DiscoveryOptions{Timeout: -1}}, "Options.Discovery.Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ledger.Connect(ctx, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Connect(%+v) = %v, %v; want an error about %s", tc.o, l, err, tc.want)
			}
			if l != nil {
				t.Fatalf("Connect returned a ledger with its error")
			}
		})
	}
}

// A remote participant child process: connects to $SERVER_URL as
// $PARTICIPANT, joins $LEDGER_OP, starts $CALLS fail-on-crash calls,
// registers $TEMPS temp files in $TEMP_DIR, prints a readyLine as JSON and
// waits until its stdin closes, or it is killed or signalled (the signal
// handler is on).
func init() { roles["remote-participant"] = runRemoteParticipant }

func runRemoteParticipant() {
	ctx := context.Background()
	l, err := ledger.NewRemoteClient(ctx, ledger.Options{
		ServerURL:         os.Getenv("SERVER_URL"),
		ParticipantID:     os.Getenv("PARTICIPANT"),
		HeartbeatInterval: envDuration("HB", 50*time.Millisecond),
		StaleThreshold:    envDuration("STALE", 400*time.Millisecond),
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	op, err := l.JoinOperation(ctx, os.Getenv("LEDGER_OP"), ledger.JoinOptions{})
	if err != nil {
		panic(err)
	}
	ready := readyLine{PID: os.Getpid()}
	for range envInt("CALLS") {
		c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "remote child call"})
		if err != nil {
			panic(err)
		}
		ready.Calls = append(ready.Calls, c.ID())
	}
	for i := range envInt("TEMPS") {
		p := filepath.Join(os.Getenv("TEMP_DIR"), fmt.Sprintf("remote-%d.tmp", i))
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			panic(err)
		}
		if err := op.RegisterTempResource(ctx, p); err != nil {
			panic(err)
		}
		ready.Temps = append(ready.Temps, p)
	}
	b, _ := json.Marshal(ready)
	fmt.Printf("%s\n", b)
	io.Copy(io.Discard, os.Stdin)
}

// startRemoteParticipant starts a remote participant child against url and
// waits for its ready line.
func startRemoteParticipant(t *testing.T, url, opID, name string, env ...string) *proc {
	t.Helper()
	p := startProc(t, child(t, "remote-participant", append([]string{
		"SERVER_URL=" + url, "LEDGER_OP=" + opID, "PARTICIPANT=" + name, "TEMP_DIR=" + t.TempDir(),
	}, env...)...))
	if err := json.Unmarshal([]byte(p.readLine(t)), &p.ready); err != nil {
		t.Fatalf("child ready line: %v", err)
	}
	return p
}

// remoteServers are the two kinds of server the multi-process tests run
// against; each returns the URL and the directory.
var remoteServers = []struct {
	name  string
	start func(t *testing.T) (url, dir string)
}{
	{"httptest", func(t *testing.T) (string, string) {
		dir := t.TempDir()
		return startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir}), dir
	}},
	{"binary", func(t *testing.T) (string, string) {
		dir := t.TempDir()
		url, _ := startBinaryServer(t, dir)
		return url, dir
	}},
}

// TestRemoteKill9DetectedByHeartbeat kills a remote participant process
// with SIGKILL: with no liveness lock to go by, the remote survivors see
// its heartbeat go stale, fail the operation, run their cleanup and
// archive the operation. They leave its temp resources: paths registered
// through a server are deleted by their registrant alone.
func TestRemoteKill9DetectedByHeartbeat(t *testing.T) {
	for _, srv := range remoteServers {
		t.Run(srv.name, func(t *testing.T) {
			ctx := context.Background()
			url, dir := srv.start(t)
			e := &env{t: t, dir: dir, open: remoteOpener(url, "")}
			init := e.Open("init", ledger.Options{})
			op, err := init.CreateOperation(ctx, ledger.CreateOptions{Description: "remote kill -9"})
			if err != nil {
				t.Fatal(err)
			}
			var survivors []*survivor
			for i := range 2 {
				survivors = append(survivors, newSurvivor(t, e, fmt.Sprintf("s%d", i), op.ID(), ledger.Options{}))
			}
			victim := startRemoteParticipant(t, url, op.ID(), "victim", "CALLS=2", "TEMPS=2")
			if _, err := os.Stat(filepath.Join(dir, op.ID()+".live", fmt.Sprintf("victim.%d.lock", victim.ready.PID))); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a remote participant has a liveness file (%v): the verdict would not be by heartbeat", err)
			}
			victim.kill9(t)

			for i, s := range survivors {
				waitClosed(t, s.op.Failed(), 10*time.Second, fmt.Sprintf("survivor %d Failed()", i))
			}
			waitClosed(t, op.Failed(), 10*time.Second, "initiator Failed()")
			d := archived(t, dir, op.ID())
			if d.OperationState != "failed" || d.DetectionTimestamp.IsZero() || d.RemovalTimestamp.IsZero() {
				t.Fatalf("archived: state %s, detection %v, removal %v", d.OperationState, d.DetectionTimestamp, d.RemovalTimestamp)
			}
			if d.Failure == nil || !slices.Equal(sorted(d.Failure.CrashedCallIDs), sorted(victim.ready.Calls)) ||
				d.Failure.ParticipantID != "victim" {
				t.Fatalf("failure %+v, want the victim's calls %v", d.Failure, victim.ready.Calls)
			}
			for _, p := range victim.ready.Temps {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("temp file %s, registered through the server, deleted by another participant (%v)", p, err)
				}
			}
			for i, s := range survivors {
				waitFor(t, 5*time.Second, "survivor callbacks", func() bool { return s.onFailure.Load() == 1 })
				if s.opFailed.Load() != 1 || s.cleanups.Load() != 1 {
					t.Fatalf("survivor %d: OnOperationFailed %d, OnCleanup %d; want 1 each", i, s.opFailed.Load(), s.cleanups.Load())
				}
				if info, _ := s.op.Failure(); !strings.Contains(info.Reason, "victim") {
					t.Fatalf("survivor %d failure %+v", i, info)
				}
			}
			log := archivedLog(t, dir, op.ID())
			evs := count(logEvents(log))
			for _, ev := range []string{"CRASH_DETECTED", "CLEANUP_STARTED", "OPERATION_FAILED"} {
				if evs[ev] != 1 {
					t.Fatalf("log has %d %s, want 1:\n%s", evs[ev], ev, log)
				}
			}
			if strings.Contains(log, "victim CRASH_DETECTED") {
				t.Fatalf("the killed victim cannot have reported itself:\n%s", log)
			}
		})
	}
}

// TestRemoteSigtermSeenAtOnce sends SIGTERM to a remote participant
// process: its signal handler reports it gone through the server, so the
// survivor, whose stale threshold is far away, sees the failure at once.
func TestRemoteSigtermSeenAtOnce(t *testing.T) {
	ctx := context.Background()
	url, dir := remoteServers[0].start(t)
	e := &env{t: t, dir: dir, open: remoteOpener(url, "")}
	init := e.Open("init", ledger.Options{HeartbeatInterval: time.Second, StaleThreshold: time.Minute})
	op, err := init.CreateOperation(ctx, ledger.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := startRemoteParticipant(t, url, op.ID(), "child", "CALLS=1", "TEMPS=1", "HB=1s", "STALE=1m")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = p.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("child ended with %v, want death by SIGTERM", err)
	}
	for _, path := range p.ready.Temps {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp file %s survived the signal (%v)", path, err)
		}
	}
	// Well below the one-minute threshold: only the child's report explains it.
	waitClosed(t, op.Failed(), 10*time.Second, "the operation to fail")
	if info, _ := op.Failure(); info.ParticipantID != "child" || len(info.CrashedCallIDs) != 1 || info.CrashedCallIDs[0] != p.ready.Calls[0] {
		t.Fatalf("failure %+v, want the child's call %v", info, p.ready.Calls)
	}
	log := archivedLog(t, dir, op.ID())
	if !strings.Contains(log, "child CRASH_DETECTED child/") {
		t.Fatalf("the child did not report itself:\n%s", log)
	}
}
