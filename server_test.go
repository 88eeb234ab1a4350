package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
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
	if err != nil {
		t.Fatal(err)
	}
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
	if err != nil {
		t.Fatalf("%s %s: %v", method, q.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
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
	if err != nil {
		t.Fatal(err)
	}
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
		if r := setup.do(t, base); r.status != http.StatusOK {
			t.Fatalf("setup %s: %d %s", setup.path, r.status, r.body)
		}
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
			if r.status != tc.wantStatus || r.code != tc.wantCode {
				t.Errorf("got %d %q, want %d %q: %.300s", r.status, r.code, tc.wantStatus, tc.wantCode, r.body)
			}
			var e struct{ Error string }
			if json.Unmarshal(r.body, &e) != nil || !strings.HasPrefix(e.Error, "ledger: ") {
				t.Errorf("error body %.300s has no ledger: message", r.body)
			}
			if strings.Contains(string(r.body), dir) {
				t.Errorf("error body shows the directory: %s", r.body)
			}
			for k := range r.header {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("CORS header %s: %s", k, r.header.Get(k))
				}
			}
			if tc.wantStatus == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if tc.wantStatus == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Error("401 without WWW-Authenticate: Bearer")
			}
			if after := listing(t, dir); !maps.Equal(before, after) {
				t.Errorf("directory changed:\nbefore %v\nafter  %v", before, after)
				before = after
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, unknownOp+".operation.lock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a lock file was made for an unknown operation: %v", err)
	}
}

// TestServerPublicEndpoints checks /health and /status: no token needed,
// the right service and port, and nothing about the directory.
func TestServerPublicEndpoints(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir, Token: "tok"})
	r := rawRequest{method: "GET", path: "/health", ctype: "-"}.do(t, base)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Fatalf("/health: %d %s", r.status, r.body)
	}
	if r := (rawRequest{method: "HEAD", path: "/health", ctype: "-"}).do(t, base); r.status != 200 {
		t.Fatalf("HEAD /health: %d", r.status)
	}
	r = rawRequest{method: "GET", path: "/status", ctype: "-"}.do(t, base)
	var st map[string]any
	if err := json.Unmarshal(r.body, &st); err != nil || r.status != 200 {
		t.Fatalf("/status: %d %s", r.status, r.body)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	if st["service"] != "tom_dist_ledger" || st["version"] == "" || fmt.Sprint(st["port"]) != port {
		t.Fatalf("/status = %v, want port %s", st, port)
	}
	if strings.Contains(string(r.body), dir) || len(st) != 3 {
		t.Fatalf("/status says more than service, version and port: %s", r.body)
	}
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
		if r.status != tc.want {
			t.Errorf("Host %s: %d %s, want %d", tc.host, r.status, r.body, tc.want)
		}
		if tc.want == 403 && r.code != "forbidden_host" {
			t.Errorf("Host %s: code %q", tc.host, r.code)
		}
	}
	if r := (rawRequest{method: "GET", path: "/status", host: "evil.example", ctype: "-"}).do(t, base); r.status != 200 {
		t.Errorf("/status by host name: %d", r.status)
	}
	tokened := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	if r := (rawRequest{path: "/operation/state", host: "ledger.internal", token: badToken, body: body}).do(t, tokened); r.status != 404 {
		t.Errorf("host name with a token: %d %s, want 404", r.status, r.body)
	}
}

// TestServerUnusableDirectory checks that a server whose directory cannot
// be opened says why and answers 503, without panicking.
func TestServerUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range []ledger.ServerOptions{{BasePath: file}, {}, {BasePath: t.TempDir(), LockTimeout: -1}} {
		srv := ledger.NewServer(o)
		if srv.Err() == nil {
			t.Fatalf("NewServer(%+v).Err() = nil", o)
		}
		ts := httptest.NewServer(srv)
		if r := (rawRequest{method: "GET", path: "/health", ctype: "-"}).do(t, ts.URL); r.status != 503 || r.code != "unavailable" {
			t.Errorf("/health: %d %s", r.status, r.body)
		}
		body := `{` + whoJSON("bob") + `,"operationId":"` + badOp + `"}`
		if r := (rawRequest{path: "/operation/state", body: body}).do(t, ts.URL); r.status != 503 {
			t.Errorf("/operation/state: %d %s", r.status, r.body)
		}
		ts.Close()
		if err := srv.Serve(context.Background(), fakeListener{addr: "127.0.0.1:1"}); err == nil {
			t.Error("Serve of a broken server returned nil")
		}
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
		if (err == nil) != tc.ok {
			t.Errorf("CheckListenAddr(%q) with %+v = %v", tc.addr, tc.o, err)
		}
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
	if err == nil || !strings.Contains(err.Error(), "without a token") {
		t.Fatalf("Serve on 192.0.2.1 without a token: %v", err)
	}

	tokened := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir(), Token: "t"})
	defer tokened.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tokened.Serve(ctx, fakeListener{addr: "192.0.2.1:19880", closed: make(chan struct{})})
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve with a token, then cancelled: %v", err)
	}
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
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != len(reqs) {
		t.Fatalf("%d log lines for %d requests:\n%s", len(lines), len(reqs), buf.String())
	}
	for i, q := range reqs {
		if lines[i]["level"] != "DEBUG" || lines[i]["path"] != q.path {
			t.Errorf("line %d = %v, want DEBUG for %s", i, lines[i], q.path)
		}
	}
	if lines[3]["code"] != "bad_request" || lines[3]["status"] != float64(400) {
		t.Errorf("failed request logged as %v", lines[3])
	}
}

// TestServerOperationsDoNotBlockEachOther holds the file lock of one
// operation: a request for it waits, while a request for another goes
// through.
func TestServerOperationsDoNotBlockEachOther(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	opA, opB := "20240101T00:00:00.000-alice-0000000a", "20240101T00:00:00.000-alice-0000000b"
	for _, id := range []string{opA, opB} {
		if r := (rawRequest{path: "/operation/create", body: `{` + whoJSON("alice") + `,"operationId":"` + id + `"}`}).do(t, base); r.status != 200 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
	}
	lock := flock.New(filepath.Join(dir, opA+".operation.lock"), flock.SetFlag(os.O_RDWR))
	if err := lock.Lock(); err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	doneA := make(chan rawReply, 1)
	go func() {
		doneA <- rawRequest{path: "/operation/log", body: `{` + whoJSON("alice") + `,"operationId":"` + opA + `","message":"a"}`}.do(t, base)
	}()
	if r := (rawRequest{path: "/operation/log", body: `{` + whoJSON("alice") + `,"operationId":"` + opB + `","message":"b"}`}).do(t, base); r.status != 200 {
		t.Fatalf("log of B while A is locked: %d %s", r.status, r.body)
	}
	select {
	case r := <-doneA:
		t.Fatalf("log of A answered %d while its lock was held", r.status)
	default:
	}
	lock.Unlock()
	select {
	case r := <-doneA:
		if r.status != 200 {
			t.Fatalf("log of A after unlock: %d %s", r.status, r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("log of A did not finish after the lock was released")
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
	if err != nil {
		t.Fatal(err)
	}
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
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := op.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.CallFrames) != 0 || d.OperationState != "running" || len(d.Participants) != clients+1 {
		t.Fatalf("final state: %d frames, state %s, %d participants", len(d.CallFrames), d.OperationState, len(d.Participants))
	}
	for _, p := range d.Participants {
		if want := map[bool]string{true: "active", false: "left"}[p.ParticipantID == "boss"]; p.State != want || p.Sessions != map[bool]int{true: 1, false: 0}[p.ParticipantID == "boss"] {
			t.Errorf("participant %+v, want %s", p, want)
		}
	}
	log, err := os.ReadFile(filepath.Join(dir, op.ID()+".operation.log"))
	if err != nil {
		t.Fatal(err)
	}
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
	if len(all) != clients*calls || len(slices.Compact(slices.Clone(all))) != clients*calls {
		t.Fatalf("%d call ids, want %d distinct", len(all), clients*calls)
	}
	for _, id := range all {
		if started[id] != 1 || ended[id] != 1 {
			t.Fatalf("call %s: started %d, ended %d times", id, started[id], ended[id])
		}
	}
	if len(started) != clients*calls || len(ended) != clients*calls {
		t.Fatalf("log has %d starts and %d ends, want %d", len(started), len(ended), clients*calls)
	}
	if err := op.Complete(ctx); err != nil {
		t.Fatal(err)
	}
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
	if err := os.WriteFile(temp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
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
		if r := q.do(t, base); r.status != 200 {
			t.Fatalf("%s: %d %s", q.path, r.status, r.body)
		}
	}
	ledger.SetClockSkew(0)

	d := archived(t, dir, badOp)
	if d.OperationState != "failed" || d.Failure == nil || len(d.Failure.CrashedCallIDs) != 1 {
		t.Fatalf("swept: state %s, failure %+v", d.OperationState, d.Failure)
	}
	if log := archivedLog(t, dir, badOp); !strings.Contains(log, "ledger-server CRASH_DETECTED all participants are gone") {
		t.Fatalf("no sweep in the log:\n%s", log)
	}
	if _, err := os.Stat(temp); err != nil {
		t.Fatalf("the server deleted a path a client named: %v", err)
	}
}
