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
	require.NoError(t, srv.Err())
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
		require.NoError(t, err, "connect")
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
	require.NoError(t, buildErr)
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
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
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
		require.Truef(t, ok, "ledger serve printed %q, stderr:\n%s", line, bs.stderr)
		return url, bs
	case <-time.After(30 * time.Second):
		require.Failf(t, "ledger serve did not start", "stderr:\n%s", bs.stderr)
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
		assert.NoErrorf(t, bs.err, "ledger serve after SIGTERM (want a graceful exit 0); stderr:\n%s", bs.stderr)
	case <-time.After(10 * time.Second):
		bs.cmd.Process.Kill()
		<-bs.done
		assert.Failf(t, "ledger serve ignored SIGTERM", "stderr:\n%s", bs.stderr)
	}
}

// TestRemoteErrorsMatchLocal checks that every backend reports the same
// conditions with the same sentinels and typed errors.
func TestRemoteErrorsMatchLocal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.Open("alice", ledger.Options{})
		b := e.Open("bob", ledger.Options{})

		_, err := b.JoinOperation(ctx, "20240101T00:00:00.000-nobody-00000000", ledger.JoinOptions{})
		require.ErrorIs(t, err, ledger.ErrOperationNotFound, "join unknown")
		_, err = b.JoinOperation(ctx, "../escape", ledger.JoinOptions{})
		require.ErrorIs(t, err, ledger.ErrInvalidID, "join ../escape")

		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "errors"})
		require.NoError(t, err)
		require.ErrorIs(t, op.DeleteCallFrame(ctx, "call_nobody_1_0000"), ledger.ErrCallNotFound, "delete unknown frame")
		require.NoError(t, op.CreateCallFrame(ctx, "raw_1"))
		require.ErrorIs(t, op.CreateCallFrame(ctx, "raw_1"), ledger.ErrCallExists, "create a frame twice")
		require.NoError(t, op.DeleteCallFrame(ctx, "raw_1"))
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "doomed"})
		require.NoError(t, err)
		require.NoError(t, call.Fail(ctx, errors.New("disk full")))
		waitClosed(t, op.Failed(), 5*time.Second, "Failed after Fail")

		_, err = b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		var ofe *ledger.OperationFailedError
		require.ErrorAs(t, err, &ofe, "join failed operation")
		require.ErrorIs(t, err, ledger.ErrOperationFailed, "join failed operation")
		assert.Equal(t, op.ID(), ofe.Info.OperationID, "failure info")
		assert.Contains(t, ofe.Info.Reason, "disk full", "failure info")
		assert.Equal(t, "alice", ofe.Info.ParticipantID, "failure info")
		assert.Equal(t, []string{call.ID()}, ofe.Info.CrashedCallIDs, "failure info")
		assert.False(t, ofe.Info.FailedAt.IsZero(), "failure info without FailedAt")
	})
}

// TestRemoteOperationLifecycle runs the rest of the Operation API over each
// backend: log, abort, state, temp resources, raw frames, spawned calls.
func TestRemoteOperationLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		a := e.Open("alice", ledger.Options{})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "life"})
		require.NoError(t, err)
		require.NoError(t, op.Log(ctx, ledger.LogWarning, "careful\nnow"))
		require.NoError(t, op.Log(ctx, ledger.LogDebug, "details"))
		tmp := filepath.Join(t.TempDir(), "scratch")
		require.NoError(t, op.RegisterTempResource(ctx, tmp))
		require.NoError(t, op.CreateCallFrame(ctx, "call_raw_1_abcd"))
		d, err := op.State(ctx)
		require.NoError(t, err)
		require.Len(t, d.TempResources, 1)
		assert.Equal(t, tmp, d.TempResources[0].Path, "temp resource")
		assert.Equal(t, "alice", d.TempResources[0].ParticipantID, "temp resource")
		require.Len(t, d.CallFrames, 1)
		assert.Equal(t, "call_raw_1_abcd", d.CallFrames[0].CallID, "frame")
		assert.False(t, d.CallFrames[0].FailOnCrash, "a raw frame fails on crash")
		require.NoError(t, op.UnregisterTempResource(ctx, tmp))
		require.NoError(t, op.DeleteCallFrame(ctx, "call_raw_1_abcd"))
		contained, err := ledger.StartCall[string](ctx, op, ledger.CallOptions[string]{Description: "side", Contained: true})
		require.NoError(t, err)
		d, err = op.State(ctx)
		require.NoError(t, err)
		require.Len(t, d.CallFrames, 1, "frames with the contained call")
		assert.False(t, d.CallFrames[0].FailOnCrash, "a contained call's frame fails on crash")
		require.NoError(t, contained.Fail(ctx, errors.New("meh")))
		require.NoError(t, op.SetAbortFlag(ctx, true))
		assert.True(t, op.IsAborted(), "not aborted after SetAbortFlag")
		aborted, err := op.CheckAbort(ctx)
		require.NoError(t, err, "CheckAbort")
		assert.True(t, aborted, "CheckAbort")
		select {
		case <-op.Failed():
			require.Fail(t, "a contained failure failed the operation")
		default:
		}
		require.NoError(t, op.Complete(ctx))
		log, err := os.ReadFile(filepath.Join(e.dir, "backup", op.ID(), "operation.log"))
		require.NoError(t, err)
		evs := count(logEvents(string(log)))
		for _, ev := range []string{"OPERATION_CREATED", "CALL_STARTED", "CALL_FAILED", "ABORT_SET", "OPERATION_COMPLETED"} {
			assert.Equalf(t, 1, evs[ev], "%s in the log:\n%s", ev, log)
		}
		assert.Contains(t, string(log), `[WARNING] alice careful\nnow`, "log line missing")
		debug, err := os.ReadFile(filepath.Join(e.dir, "backup", op.ID(), "operation.debug.log"))
		assert.NoError(t, err, "debug log")
		assert.Contains(t, string(debug), "[DEBUG] alice details", "debug log")
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
	assert.NotErrorAs(t, err, &re, "a connection error came back as a RemoteError")
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
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = op.State(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "State against a hung server")
	require.NoError(t, ctx.Err(), "the deadline was the test's, not the request's")
	assert.Equal(t, int32(2), hung.Load(), "hung requests (attempts)")
}

// TestRemoteServerRestart stops the server in the middle of an operation
// and starts a new one on the same address and directory: the clients go
// on, because the state is on disk.
func TestRemoteServerRestart(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	stop := serveOn(t, dir, ln)
	ctx := context.Background()
	url := "http://" + addr
	a, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "alice", ServerURL: url})
	require.NoError(t, err)
	defer a.Close()
	b, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "bob", ServerURL: url})
	require.NoError(t, err)
	defer b.Close()
	op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "restart"})
	require.NoError(t, err)
	bop, err := b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	before, err := ledger.StartCall[int](ctx, bop, ledger.CallOptions[int]{Description: "spans the restart"})
	require.NoError(t, err)

	stop()
	_, err = bop.State(ctx)
	require.Error(t, err, "State succeeded with the server down")
	ln, err = net.Listen("tcp", addr)
	require.NoErrorf(t, err, "listen again on %s", addr)
	serveOn(t, dir, ln)

	require.NoError(t, before.End(ctx, 1), "End after restart")
	for i := range 3 {
		c, err := ledger.StartCall[int](ctx, bop, ledger.CallOptions[int]{})
		require.NoError(t, err)
		require.NoError(t, c.End(ctx, i))
	}
	require.NoError(t, bop.Leave(ctx, ledger.LeaveOptions{}))
	require.NoError(t, op.Complete(ctx))
	log, err := os.ReadFile(filepath.Join(dir, "backup", op.ID(), "operation.log"))
	require.NoError(t, err)
	evs := count(logEvents(string(log)))
	assert.Equalf(t, 4, evs["CALL_STARTED"], "CALL_STARTED in the log:\n%s", log)
	assert.Equalf(t, 4, evs["CALL_ENDED"], "CALL_ENDED in the log:\n%s", log)
	assert.Equalf(t, 1, evs["OPERATION_COMPLETED"], "OPERATION_COMPLETED in the log:\n%s", log)
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
			assert.NoError(t, <-done, "Serve")
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
	require.Truef(t, strings.HasPrefix(url, "https://127.0.0.1:"), "url %q", url)
	ctx := context.Background()
	tc := &tls.Config{RootCAs: pool}

	good, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "good", ServerURL: url, Token: "s3cret", TLSConfig: tc})
	require.NoError(t, err)
	defer good.Close()
	op, err := good.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)

	bad, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "bad", ServerURL: url, Token: "guess", TLSConfig: tc})
	require.NoError(t, err) // /status needs no token
	defer bad.Close()
	_, err = bad.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	var re *ledger.RemoteError
	require.ErrorAs(t, err, &re, "join with a wrong token")
	assert.Equal(t, http.StatusUnauthorized, re.StatusCode, "join with a wrong token")
	assert.Equal(t, "unauthorized", re.Code, "join with a wrong token")

	_, err = ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "naive", ServerURL: url, Token: "s3cret", Retry: ledger.RetryPolicy{Attempts: 1}})
	require.ErrorIs(t, err, ledger.ErrNoServer, "client without the CA")
	require.NoError(t, op.Complete(ctx))
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns them with a pool that trusts the certificate.
func selfSignedCert(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
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
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
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
			require.ErrorContainsf(t, err, tc.want, "Connect(%+v)", tc.o)
			// l == nil, not assert.Nil: a nil pointer in the interface is a bug too.
			assert.Truef(t, l == nil, "Connect returned a ledger (%#v) with its error", l)
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
	require.NoError(t, json.Unmarshal([]byte(p.readLine(t)), &p.ready), "child ready line")
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
			require.NoError(t, err)
			var survivors []*survivor
			for i := range 2 {
				survivors = append(survivors, newSurvivor(t, e, fmt.Sprintf("s%d", i), op.ID(), ledger.Options{}))
			}
			victim := startRemoteParticipant(t, url, op.ID(), "victim", "CALLS=2", "TEMPS=2")
			_, err = os.Stat(filepath.Join(dir, op.ID()+".live", fmt.Sprintf("victim.%d.lock", victim.ready.PID)))
			require.ErrorIs(t, err, os.ErrNotExist, "a remote participant has a liveness file: the verdict would not be by heartbeat")
			victim.kill9(t)

			for i, s := range survivors {
				waitClosed(t, s.op.Failed(), 10*time.Second, fmt.Sprintf("survivor %d Failed()", i))
			}
			waitClosed(t, op.Failed(), 10*time.Second, "initiator Failed()")
			d := archived(t, dir, op.ID())
			assert.Equal(t, "failed", d.OperationState, "archived state")
			assert.False(t, d.DetectionTimestamp.IsZero(), "no detection timestamp")
			assert.False(t, d.RemovalTimestamp.IsZero(), "no removal timestamp")
			require.NotNil(t, d.Failure, "failure")
			assert.ElementsMatch(t, victim.ready.Calls, d.Failure.CrashedCallIDs, "crashed calls")
			assert.Equal(t, "victim", d.Failure.ParticipantID, "failed participant")
			for _, p := range victim.ready.Temps {
				_, err := os.Stat(p)
				assert.NoErrorf(t, err, "temp file %s, registered through the server, deleted by another participant", p)
			}
			for i, s := range survivors {
				waitFor(t, 5*time.Second, "survivor callbacks", func() bool { return s.onFailure.Load() == 1 })
				assert.Equalf(t, int32(1), s.opFailed.Load(), "survivor %d: OnOperationFailed calls", i)
				assert.Equalf(t, int32(1), s.cleanups.Load(), "survivor %d: OnCleanup calls", i)
				info, _ := s.op.Failure()
				assert.Containsf(t, info.Reason, "victim", "survivor %d failure %+v", i, info)
			}
			log := archivedLog(t, dir, op.ID())
			evs := count(logEvents(log))
			for _, ev := range []string{"CRASH_DETECTED", "CLEANUP_STARTED", "OPERATION_FAILED"} {
				assert.Equalf(t, 1, evs[ev], "%s in the log:\n%s", ev, log)
			}
			assert.NotContains(t, log, "victim CRASH_DETECTED", "the killed victim cannot have reported itself")
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
	require.NoError(t, err)
	p := startRemoteParticipant(t, url, op.ID(), "child", "CALLS=1", "TEMPS=1", "HB=1s", "STALE=1m")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	err = p.cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the child's exit")
	require.Equalf(t, syscall.SIGTERM, ee.Sys().(syscall.WaitStatus).Signal(), "child ended with %v, want death by SIGTERM", err)
	for _, path := range p.ready.Temps {
		_, err := os.Stat(path)
		assert.ErrorIsf(t, err, os.ErrNotExist, "temp file %s survived the signal", path)
	}
	// Well below the one-minute threshold: only the child's report explains it.
	waitClosed(t, op.Failed(), 10*time.Second, "the operation to fail")
	info, _ := op.Failure()
	assert.Equal(t, "child", info.ParticipantID, "failure, want the child's call")
	assert.Equal(t, []string{p.ready.Calls[0]}, info.CrashedCallIDs, "failure, want the child's call")
	assert.Contains(t, archivedLog(t, dir, op.ID()), "child CRASH_DETECTED child/", "the child did not report itself")
}
