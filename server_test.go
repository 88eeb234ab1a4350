package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gofrs/flock"
	"github.com/tomdist/ledger"
)

// rawRequest is one hand-made request to a server.
type rawRequest struct {
	method  string // "" is POST
	path    string
	token   string // "" sends none
	ctype   string // "" is application/json; "-" sends none
	host    string // Host header; "" keeps the URL's
	body    string
	chunked bool // send the body without a Content-Length
}

// rawReply is what came back.
type rawReply struct {
	status int
	code   string
	header http.Header
	body   []byte
}

func (q rawRequest) do(t testing.TB, base string) rawReply {
	t.Helper()
	method := q.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = strings.NewReader(q.body)
	if q.chunked {
		body = io.MultiReader(body) // hides the length
	}
	req, err := http.NewRequest(method, base+q.path, body)
	require.NoError(t, err)
	switch q.ctype {
	case "":
		req.Header.Set("Content-Type", "application/json")
	case "-":
	default:
		req.Header.Set("Content-Type", q.ctype)
	}
	if q.token != "" {
		req.Header.Set("Authorization", q.token)
	}
	if q.host != "" {
		req.Host = q.host
	}
	req.Header.Set("Origin", "http://evil.example")
	res, err := http.DefaultClient.Do(req)
	require.NoErrorf(t, err, "%s %s", method, q.path)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var e struct {
		Code string `json:"code"`
	}
	json.Unmarshal(b, &e)
	return rawReply{status: res.StatusCode, code: e.Code, header: res.Header, body: b}
}

// listing describes every file and directory under dir: its path, size,
// modification time and content hash.
func listing(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			m[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m[rel] = fmt.Sprintf("%d %d %x", fi.Size(), fi.ModTime().UnixNano(), sha256.Sum256(b))
		return nil
	})
	require.NoError(t, err)
	return m
}

const (
	badOp    = "20240101T00:00:00.000-alice-0000beef"
	badToken = "Bearer tok"
)

// whoJSON is a participant as JSON fields.
func whoJSON(id string) string {
	return fmt.Sprintf(`"participantId":%q,"participantPid":100,"host":"h1"`, id)
}

// TestServerBadInput sends malformed, incomplete, mistyped, hostile,
// oversized, misdirected and unauthenticated requests: each gets its
// status and code, and the ledger directory does not change.
func TestServerBadInput(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, Token: "tok"})
	for _, setup := range []rawRequest{
		{path: "/operation/create", token: badToken, body: `{` + whoJSON("alice") + `,"operationId":"` + badOp + `"}`},
		{path: "/call/start", token: badToken, body: `{` + whoJSON("alice") + `,"operationId":"` + badOp + `","callId":"call_alice_1_abcd"}`},
	} {
		r := setup.do(t, base)
		require.Equalf(t, http.StatusOK, r.status, "setup %s: %s", setup.path, r.body)
	}
	// A valid body for most paths, to be spoilt one way at a time.
	valid := func(extra string) string {
		return `{` + whoJSON("bob") + `,"operationId":"` + badOp + `"` + extra + `}`
	}
	huge := `{` + whoJSON("bob") + `,"operationId":"` + badOp + `","message":"` + strings.Repeat("x", 1<<20) + `"}`
	unknownOp := "20240101T00:00:00.000-nobody-00000000"

	cases := []struct {
		name       string
		q          rawRequest
		wantStatus int
		wantCode   string
	}{
		{"malformed json", rawRequest{path: "/operation/join", body: `{"participantId":`}, 400, "bad_request"},
		{"not json", rawRequest{path: "/operation/join", body: `hello`}, 400, "bad_request"},
		{"array body", rawRequest{path: "/operation/join", body: `[1,2]`}, 400, "bad_request"},
		{"null body", rawRequest{path: "/operation/join", body: `null`}, 400, "bad_request"},
		{"empty body", rawRequest{path: "/operation/join", body: ``}, 400, "bad_request"},
		{"two objects", rawRequest{path: "/operation/join", body: valid("") + valid("")}, 400, "bad_request"},
		{"missing participantId", rawRequest{path: "/operation/join", body: `{"participantPid":1,"host":"h","operationId":"` + badOp + `"}`}, 400, "bad_request"},
		{"missing participantPid", rawRequest{path: "/operation/join", body: `{"participantId":"bob","host":"h","operationId":"` + badOp + `"}`}, 400, "bad_request"},
		{"missing host", rawRequest{path: "/operation/join", body: `{"participantId":"bob","participantPid":1,"after":0,"operationId":"` + badOp + `"}`}, 400, "bad_request"}, // without after, a Dart join
		{"missing operationId", rawRequest{path: "/operation/join", body: `{` + whoJSON("bob") + `}`}, 400, "bad_request"},
		{"missing callId", rawRequest{path: "/call/end", body: valid("")}, 400, "bad_request"},
		{"missing message path", rawRequest{path: "/temp/register", body: valid("")}, 400, "bad_request"},
		{"missing victim", rawRequest{path: "/operation/crash", body: valid("")}, 400, "bad_request"},
		{"pid as string", rawRequest{path: "/operation/join", body: `{"participantId":"bob","participantPid":"1","host":"h","operationId":"` + badOp + `"}`}, 400, "bad_request"},
		{"pid fractional", rawRequest{path: "/operation/join", body: `{"participantId":"bob","participantPid":1.5,"host":"h","operationId":"` + badOp + `"}`}, 400, "bad_request"},
		{"pid negative", rawRequest{path: "/operation/join", body: `{"participantId":"bob","participantPid":-4,"host":"h","operationId":"` + badOp + `"}`}, 400, "bad_request"},
		{"operationId as number", rawRequest{path: "/operation/join", body: `{` + whoJSON("bob") + `,"operationId":5}`}, 400, "bad_request"},
		{"failOnCrash as string", rawRequest{path: "/call/start", body: valid(`,"callId":"call_bob_1_0000","failOnCrash":"yes"`)}, 400, "bad_request"},
		{"abort value as number", rawRequest{path: "/operation/abort", body: valid(`,"value":1`)}, 400, "bad_request"},
		{"bad level", rawRequest{path: "/operation/log", body: valid(`,"message":"m","level":"loud"`)}, 400, "bad_request"},
		{"bad host", rawRequest{path: "/operation/join", body: `{"participantId":"bob","participantPid":1,"host":"a b","operationId":"` + badOp + `"}`}, 400, "bad_request"},
		{"NUL in temp path", rawRequest{path: "/temp/register", body: valid(`,"path":"/tmp/a\u0000b"`)}, 400, "bad_request"},
		{"traversal operationId", rawRequest{path: "/operation/join", body: `{` + whoJSON("bob") + `,"operationId":"../../etc/passwd"}`}, 400, "invalid_id"},
		{"dotdot operationId", rawRequest{path: "/operation/state", body: `{` + whoJSON("bob") + `,"operationId":".."}`}, 400, "invalid_id"},
		{"slash operationId", rawRequest{path: "/operation/create", body: `{` + whoJSON("bob") + `,"operationId":"a/b"}`}, 400, "invalid_id"},
		{"absolute operationId", rawRequest{path: "/operation/log", body: `{` + whoJSON("bob") + `,"operationId":"/etc/passwd","message":"m"}`}, 400, "invalid_id"},
		{"long operationId", rawRequest{path: "/operation/join", body: `{` + whoJSON("bob") + `,"operationId":"` + strings.Repeat("a", 201) + `"}`}, 400, "invalid_id"},
		{"traversal callId", rawRequest{path: "/call/end", body: valid(`,"callId":"../call"`)}, 400, "invalid_id"},
		{"traversal raw frame", rawRequest{path: "/callframe/create", body: valid(`,"callId":"x/../../y"`)}, 400, "invalid_id"},
		{"traversal participantId", rawRequest{path: "/operation/join", body: `{"participantId":"../bob","participantPid":1,"host":"h","operationId":"` + badOp + `"}`}, 400, "invalid_id"},
		{"colon participantId", rawRequest{path: "/operation/join", body: `{"participantId":"bob:1","participantPid":1,"host":"h","operationId":"` + badOp + `"}`}, 400, "invalid_id"},
		{"traversal victim", rawRequest{path: "/operation/crash", body: valid(`,"victim":{"participantId":"..","participantPid":1,"host":"h"}`)}, 400, "invalid_id"},
		{"oversize body", rawRequest{path: "/operation/log", body: huge}, 413, "too_large"},
		{"oversize chunked body", rawRequest{path: "/operation/log", body: huge, chunked: true}, 413, "too_large"},
		{"text/plain body", rawRequest{path: "/operation/join", ctype: "text/plain", body: valid("")}, 415, "unsupported_media"},
		{"form body", rawRequest{path: "/operation/abort", ctype: "application/x-www-form-urlencoded", body: "operationId=x"}, 415, "unsupported_media"},
		{"no content type", rawRequest{path: "/operation/join", ctype: "-", body: valid("")}, 415, "unsupported_media"},
		{"GET on POST path", rawRequest{method: "GET", path: "/operation/state"}, 405, "method_not_allowed"},
		{"PUT on POST path", rawRequest{method: "PUT", path: "/call/start", body: valid("")}, 405, "method_not_allowed"},
		{"OPTIONS preflight", rawRequest{method: "OPTIONS", path: "/operation/abort"}, 405, "method_not_allowed"},
		{"POST on status", rawRequest{path: "/status", body: `{}`}, 405, "method_not_allowed"},
		{"DELETE on health", rawRequest{method: "DELETE", path: "/health"}, 405, "method_not_allowed"},
		{"unknown path", rawRequest{path: "/operation/explode", body: valid("")}, 404, "not_found"},
		{"traversal path", rawRequest{method: "GET", path: "/../../etc/passwd"}, 404, "not_found"},
		{"unknown operation join", rawRequest{path: "/operation/join", body: `{` + whoJSON("bob") + `,"operationId":"` + unknownOp + `"}`}, 404, "operation_not_found"},
		{"unknown operation state", rawRequest{path: "/operation/state", body: `{` + whoJSON("bob") + `,"operationId":"` + unknownOp + `"}`}, 404, "operation_not_found"},
		{"unknown operation log", rawRequest{path: "/operation/log", body: `{` + whoJSON("bob") + `,"operationId":"` + unknownOp + `","message":"m"}`}, 404, "operation_not_found"},
		{"unknown operation call", rawRequest{path: "/call/start", body: `{` + whoJSON("bob") + `,"operationId":"` + unknownOp + `","callId":"call_bob_1_0000"}`}, 404, "operation_not_found"},
		{"unknown operation abort", rawRequest{path: "/operation/abort", body: `{` + whoJSON("bob") + `,"operationId":"` + unknownOp + `"}`}, 404, "operation_not_found"},
		{"unknown call", rawRequest{path: "/call/end", body: valid(`,"callId":"call_bob_9_0000"`)}, 404, "call_not_found"},
		{"duplicate create", rawRequest{path: "/operation/create", body: valid("")}, 409, "operation_exists"},
		{"complete by non-initiator", rawRequest{path: "/operation/complete", body: valid("")}, 409, "not_initiator"},
		{"missing token", rawRequest{path: "/operation/state", token: "-", body: valid("")}, 401, "unauthorized"},
		{"wrong token", rawRequest{path: "/operation/state", token: "Bearer tik", body: valid("")}, 401, "unauthorized"},
		{"token prefix", rawRequest{path: "/operation/state", token: "Bearer to", body: valid("")}, 401, "unauthorized"},
		{"token with suffix", rawRequest{path: "/operation/state", token: "Bearer tok2", body: valid("")}, 401, "unauthorized"},
		{"basic auth", rawRequest{path: "/operation/abort", token: "Basic dG9rOnRvaw==", body: valid("")}, 401, "unauthorized"},
		{"bare token", rawRequest{path: "/operation/abort", token: "tok", body: valid("")}, 401, "unauthorized"},
	}
	before := listing(t, dir)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			switch q.token {
			case "":
				q.token = badToken
			case "-":
				q.token = ""
			}
			r := q.do(t, base)
			assert.Equalf(t, tc.wantStatus, r.status, "status: %.300s", r.body)
			assert.Equalf(t, tc.wantCode, r.code, "code: %.300s", r.body)
			var e struct{ Error string }
			assert.NoErrorf(t, json.Unmarshal(r.body, &e), "error body %.300s", r.body)
			assert.Truef(t, strings.HasPrefix(e.Error, "ledger: "), "error body %.300s has no ledger: message", r.body)
			assert.NotContains(t, string(r.body), dir, "error body shows the directory")
			for k := range r.header {
				assert.Falsef(t, strings.HasPrefix(k, "Access-Control-"), "CORS header %s: %s", k, r.header.Get(k))
			}
			if tc.wantStatus == 405 {
				assert.NotEmpty(t, r.header.Get("Allow"), "405 without Allow")
			}
			if tc.wantStatus == 401 {
				assert.True(t, strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer"), "401 without WWW-Authenticate: Bearer")
			}
			after := listing(t, dir)
			assert.Equal(t, before, after, "directory changed")
			before = after
		})
	}
	_, err := os.Stat(filepath.Join(dir, unknownOp+".operation.lock"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "a lock file was made for an unknown operation")
}

// TestServerPublicEndpoints checks /health and /status: no token needed,
// the right service and port, and nothing about the directory.
func TestServerPublicEndpoints(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, Token: "tok"})
	r := rawRequest{method: "GET", path: "/health", ctype: "-"}.do(t, base)
	require.Equalf(t, 200, r.status, "/health: %s", r.body)
	require.Equal(t, `{"status":"ok"}`, strings.TrimSpace(string(r.body)), "/health")
	r = rawRequest{method: "HEAD", path: "/health", ctype: "-"}.do(t, base)
	require.Equal(t, 200, r.status, "HEAD /health")
	r = rawRequest{method: "GET", path: "/status", ctype: "-"}.do(t, base)
	var st map[string]any
	require.NoErrorf(t, json.Unmarshal(r.body, &st), "/status: %d %s", r.status, r.body)
	require.Equalf(t, 200, r.status, "/status: %s", r.body)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	assert.Equal(t, "tom_dist_ledger", st["service"], "/status service")
	assert.NotEqual(t, "", st["version"], "/status version")
	assert.Equal(t, port, fmt.Sprint(st["port"]), "/status port")
	assert.NotContains(t, string(r.body), dir, "/status shows the directory")
	assert.Lenf(t, st, 3, "/status says more than service, version and port: %s", r.body)
}

// TestServerHostCheckWithoutToken checks that a server without a token
// answers only requests addressed to an IP or localhost (DNS rebinding).
func TestServerHostCheckWithoutToken(t *testing.T) {
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir()})
	body := `{` + whoJSON("bob") + `,"operationId":"` + badOp + `"}`
	for _, tc := range []struct {
		host string
		want int
	}{
		{"evil.example", 403},
		{"evil.example:19880", 403},
		{"localhost.evil.example", 403},
		{"127.0.0.1:19880", 404}, // reaches the ledger: unknown operation
		{"localhost:19880", 404},
		{"[::1]:19880", 404},
	} {
		r := rawRequest{path: "/operation/state", host: tc.host, body: body}.do(t, base)
		assert.Equalf(t, tc.want, r.status, "Host %s: %s", tc.host, r.body)
		if tc.want == 403 {
			assert.Equalf(t, "forbidden_host", r.code, "Host %s: code", tc.host)
		}
	}
	r := rawRequest{method: "GET", path: "/status", host: "evil.example", ctype: "-"}.do(t, base)
	assert.Equal(t, 200, r.status, "/status by host name")
	tokened := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	r = rawRequest{path: "/operation/state", host: "ledger.internal", token: badToken, body: body}.do(t, tokened)
	assert.Equalf(t, 404, r.status, "host name with a token: %s", r.body)
}

// TestServerUnusableDirectory checks that a server whose directory cannot
// be opened says why and answers 503, without panicking.
func TestServerUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for _, o := range []ledger.ServerOptions{{BasePath: file}, {}, {BasePath: t.TempDir(), LockTimeout: -1}} {
		srv := ledger.NewServer(o)
		require.Errorf(t, srv.Err(), "NewServer(%+v).Err()", o)
		ts := httptest.NewServer(srv)
		r := rawRequest{method: "GET", path: "/health", ctype: "-"}.do(t, ts.URL)
		assert.Equalf(t, 503, r.status, "/health: %s", r.body)
		assert.Equalf(t, "unavailable", r.code, "/health: %s", r.body)
		body := `{` + whoJSON("bob") + `,"operationId":"` + badOp + `"}`
		r = rawRequest{path: "/operation/state", body: body}.do(t, ts.URL)
		assert.Equalf(t, 503, r.status, "/operation/state: %s", r.body)
		ts.Close()
		assert.Error(t, srv.Serve(context.Background(), fakeListener{addr: "127.0.0.1:1"}), "Serve of a broken server")
		srv.Close()
	}
}

// TestServerCheckListenAddr checks the loopback rule.
func TestServerCheckListenAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		o    ledger.ServerOptions
		ok   bool
	}{
		{"127.0.0.1:19880", ledger.ServerOptions{}, true},
		{"127.0.0.9:0", ledger.ServerOptions{}, true},
		{"localhost:19880", ledger.ServerOptions{}, true},
		{"[::1]:19880", ledger.ServerOptions{}, true},
		{"0.0.0.0:19880", ledger.ServerOptions{}, false},
		{":19880", ledger.ServerOptions{}, false},
		{"[::]:19880", ledger.ServerOptions{}, false},
		{"192.0.2.1:19880", ledger.ServerOptions{}, false},
		{"ledger.example:19880", ledger.ServerOptions{}, false},
		{"0.0.0.0:19880", ledger.ServerOptions{Token: "t"}, true},
		{"0.0.0.0:19880", ledger.ServerOptions{Insecure: true}, true},
		{"no-port", ledger.ServerOptions{Token: "t"}, false},
	} {
		err := tc.o.CheckListenAddr(tc.addr)
		assert.Equalf(t, tc.ok, err == nil, "CheckListenAddr(%q) with %+v = %v", tc.addr, tc.o, err)
	}
}

// fakeListener is a listener that claims an address and accepts nothing:
// Serve can be checked against any address without sending traffic.
type fakeListener struct {
	addr   string
	closed chan struct{}
}

func (l fakeListener) Accept() (net.Conn, error) {
	if l.closed == nil {
		return nil, net.ErrClosed
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l fakeListener) Close() error {
	if l.closed != nil {
		select {
		case <-l.closed:
		default:
			close(l.closed)
		}
	}
	return nil
}

func (l fakeListener) Addr() net.Addr {
	ap, err := net.ResolveTCPAddr("tcp", l.addr)
	if err != nil {
		panic(err)
	}
	return ap
}

// TestServerServeRefusesNonLoopback checks that Serve enforces the
// loopback rule on the listener it is given, and that a token lifts it.
func TestServerServeRefusesNonLoopback(t *testing.T) {
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir()})
	defer srv.Close()
	err := srv.Serve(context.Background(), fakeListener{addr: "192.0.2.1:19880", closed: make(chan struct{})})
	require.ErrorContains(t, err, "without a token", "Serve on 192.0.2.1 without a token")

	tokened := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir(), Token: "t"})
	defer tokened.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tokened.Serve(ctx, fakeListener{addr: "192.0.2.1:19880", closed: make(chan struct{})})
	}()
	cancel()
	require.NoError(t, <-done, "Serve with a token, then cancelled")
}

// TestServerLogsEachRequest checks the request log: one debug line per
// request.
func TestServerLogsEachRequest(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Logger: log})
	reqs := []rawRequest{
		{method: "GET", path: "/health", ctype: "-"},
		{method: "GET", path: "/status", ctype: "-"},
		{path: "/operation/create", body: `{` + whoJSON("alice") + `,"operationId":"` + badOp + `"}`},
		{path: "/operation/join", body: `{`},
		{method: "GET", path: "/nowhere"},
	}
	for _, q := range reqs {
		q.do(t, base)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoErrorf(t, json.Unmarshal([]byte(l), &m), "log line %q", l)
		lines = append(lines, m)
	}
	require.Lenf(t, lines, len(reqs), "log lines for %d requests:\n%s", len(reqs), buf.String())
	for i, q := range reqs {
		assert.Equalf(t, "DEBUG", lines[i]["level"], "line %d = %v", i, lines[i])
		assert.Equalf(t, q.path, lines[i]["path"], "line %d = %v", i, lines[i])
	}
	assert.Equalf(t, "bad_request", lines[3]["code"], "failed request logged as %v", lines[3])
	assert.Equalf(t, float64(400), lines[3]["status"], "failed request logged as %v", lines[3])
}

// TestServerOperationsDoNotBlockEachOther holds the file lock of one
// operation: a request for it waits, while a request for another goes
// through.
func TestServerOperationsDoNotBlockEachOther(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	opA, opB := "20240101T00:00:00.000-alice-0000000a", "20240101T00:00:00.000-alice-0000000b"
	for _, id := range []string{opA, opB} {
		r := rawRequest{path: "/operation/create", body: `{` + whoJSON("alice") + `,"operationId":"` + id + `"}`}.do(t, base)
		require.Equalf(t, 200, r.status, "create: %s", r.body)
	}
	lock := flock.New(filepath.Join(dir, opA+".operation.lock"), flock.SetFlag(os.O_RDWR))
	require.NoError(t, lock.Lock())
	defer lock.Unlock()
	doneA := make(chan rawReply, 1)
	go func() {
		doneA <- rawRequest{path: "/operation/log", body: `{` + whoJSON("alice") + `,"operationId":"` + opA + `","message":"a"}`}.do(t, base)
	}()
	r := rawRequest{path: "/operation/log", body: `{` + whoJSON("alice") + `,"operationId":"` + opB + `","message":"b"}`}.do(t, base)
	require.Equalf(t, 200, r.status, "log of B while A is locked: %s", r.body)
	select {
	case r := <-doneA:
		require.Failf(t, "log of A answered while its lock was held", "status %d", r.status)
	default:
	}
	lock.Unlock()
	select {
	case r := <-doneA:
		assert.Equalf(t, 200, r.status, "log of A after unlock: %s", r.body)
	case <-time.After(20 * time.Second):
		require.Fail(t, "log of A did not finish after the lock was released")
	}
}

// TestServerConcurrentClients runs many remote participants, each with its
// own client, making call round trips on one operation at once: every
// call is accounted for and the final state is consistent. Each round trip
// is two appends to the journal under one lock, and every change is
// pushed to the 51 participants' streams, so 50 x 200 calls take some 15s
// on two cores; under the race detector, which slows the server several
// times, each client makes 20.
func TestServerConcurrentClients(t *testing.T) {
	clients, calls := 50, 200
	if raceEnabled {
		calls = 20
	}
	dir := t.TempDir()
	open := remoteOpener(startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir}), "")
	ctx := context.Background()
	// Heartbeats are slow here so that the test measures calls, not beats.
	slow := ledger.Options{HeartbeatInterval: time.Minute, StaleThreshold: 5 * time.Minute}
	o := slow
	o.ParticipantID = "boss"
	op, err := open(t, o).CreateOperation(ctx, ledger.CreateOptions{Description: "stampede"})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	ids := make([][]string, clients)
	for i := range clients {
		o := slow
		o.ParticipantID = fmt.Sprintf("w%02d", i)
		l := open(t, o)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				wop, err := l.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
				if err != nil {
					return err
				}
				for j := range calls {
					c, err := ledger.StartCall[int](ctx, wop, ledger.CallOptions[int]{})
					if err != nil {
						return fmt.Errorf("%s call %d start: %w", l.ParticipantID(), j, err)
					}
					if err := c.End(ctx, j); err != nil {
						return fmt.Errorf("%s call %d end: %w", l.ParticipantID(), j, err)
					}
					ids[i] = append(ids[i], c.ID())
				}
				return wop.Leave(ctx, ledger.LeaveOptions{})
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	d, err := op.State(ctx)
	require.NoError(t, err)
	require.Empty(t, d.CallFrames, "frames in the final state")
	require.Equal(t, "running", d.OperationState, "final state")
	require.Len(t, d.Participants, clients+1, "participants in the final state")
	for _, p := range d.Participants {
		wantState, wantSessions := "left", 0
		if p.ParticipantID == "boss" {
			wantState, wantSessions = "active", 1
		}
		assert.Equalf(t, wantState, p.State, "participant %+v", p)
		assert.Equalf(t, wantSessions, p.Sessions, "participant %+v", p)
	}
	log, err := os.ReadFile(filepath.Join(dir, op.ID()+".operation.log"))
	require.NoError(t, err)
	started, ended := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[3] == "CALL_STARTED" {
			started[f[4]]++
		}
		if len(f) >= 5 && f[3] == "CALL_ENDED" {
			ended[f[4]]++
		}
	}
	var all []string
	for _, c := range ids {
		all = append(all, c...)
	}
	slices.Sort(all)
	require.Equal(t, clients*calls, len(all), "call ids")
	require.Equal(t, clients*calls, len(slices.Compact(slices.Clone(all))), "distinct call ids")
	for _, id := range all {
		require.Equalf(t, 1, started[id], "starts of call %s", id)
		require.Equalf(t, 1, ended[id], "ends of call %s", id)
	}
	require.Equal(t, clients*calls, len(started), "calls started in the log")
	require.Equal(t, clients*calls, len(ended), "calls ended in the log")
	require.NoError(t, op.Complete(ctx))
}

// TestServerSweepsOrphans checks that the server, like a local ledger,
// fails and archives an operation whose participants are all gone, and
// that it leaves the temp resources they named alone. The participant's
// heartbeat is made ten minutes old through the clock-skew test seam.
func TestServerSweepsOrphans(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, StaleThreshold: 20 * time.Millisecond})
	host, _ := os.Hostname()
	temp := filepath.Join(t.TempDir(), "keep-me")
	require.NoError(t, os.WriteFile(temp, nil, 0o644))
	ghost := fmt.Sprintf(`"participantId":"ghost","participantPid":1,"host":%q,"operationId":%q`, host, badOp)
	// The ghost's last heartbeat, ten minutes ago: it was last heard of
	// when it created the operation, at a time the clock-skew seam puts
	// ten minutes back.
	ledger.SetClockSkew(-10 * time.Minute)
	t.Cleanup(func() { ledger.SetClockSkew(0) })
	for _, q := range []rawRequest{
		{path: "/operation/create", body: `{` + ghost + `}`},
		{path: "/call/start", body: `{` + ghost + `,"callId":"call_ghost_1_0000"}`},
		{path: "/temp/register", body: `{` + ghost + `,"path":` + strconv.Quote(temp) + `}`},
	} {
		r := q.do(t, base)
		require.Equalf(t, 200, r.status, "%s: %s", q.path, r.body)
	}
	ledger.SetClockSkew(0)

	d := archived(t, dir, badOp)
	assert.Equal(t, "failed", d.OperationState, "swept state")
	require.NotNil(t, d.Failure, "swept failure")
	assert.Len(t, d.Failure.CrashedCallIDs, 1, "crashed calls")
	assert.Contains(t, archivedLog(t, dir, badOp), "ledger-server CRASH_DETECTED all participants are gone", "no sweep in the log")
	_, err := os.Stat(temp)
	assert.NoError(t, err, "the server deleted a path a client named")
}
