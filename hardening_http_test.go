package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// hardeningOp is the operation the HTTP edge tests create.
const hardeningOp = "20240101T00:00:00.000-alice-0000cafe"

// logBody logs a line to hardeningOp as bob: a request that takes the
// operation's lock.
var logBody = `{` + whoJSON("bob") + `,"operationId":"` + hardeningOp + `","message":"m"}`

// startHardeningServer serves a fresh directory with token "tok" on a real
// loopback httptest server in which alice has created hardeningOp.
func startHardeningServer(t *testing.T) string {
	t.Helper()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: "tok"})
	r := rawRequest{path: "/operation/create", token: badToken, body: `{` + whoJSON("alice") + `,"operationId":"` + hardeningOp + `"}`}.do(t, base)
	require.Equal(t, http.StatusOK, r.status, "create: %s", r.body)
	return base
}

// postLog sends POST /operation/log with logBody and the given extra
// header values (each value one header line) and returns the status and
// code.
func postLog(t *testing.T, base string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/operation/log", strings.NewReader(logBody))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer tok")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var e struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(res.Body).Decode(&e) // a reply without a code has none
	return res.StatusCode, e.Code
}

// TestServerLedgerTimeoutHeader sends every kind of Ledger-Timeout: a
// positive count of milliseconds is honoured, one larger than the server's
// lock timeout (up to values that overflow a time.Duration or an int64)
// is clamped to it, and anything else is a 400, never a 500. Each accepted
// value is sent several times: a timeout that overflowed to a past
// deadline lost the race for the lock only some of the time.
func TestServerLedgerTimeoutHeader(t *testing.T) {
	base := startHardeningServer(t)
	for _, tc := range []struct {
		name   string
		values []string // header lines; nil sends none
		want   int
	}{
		{"absent", nil, 200},
		{"a second", []string{"1000"}, 200},
		{"above the lock timeout", []string{"3600000"}, 200},
		{"overflows a Duration", []string{"9223372036854775"}, 200},
		{"max int64", []string{"9223372036854775807"}, 200},
		{"overflows an int64", []string{"99999999999999999999999999999999"}, 200},
		{"leading zeros", []string{"0005000"}, 200},
		{"zero", []string{"0"}, 400},
		{"negative", []string{"-1"}, 400},
		{"min int64", []string{"-9223372036854775808"}, 400},
		{"plus sign", []string{"+5000"}, 400},
		{"fraction", []string{"1.5"}, 400},
		{"unit", []string{"5s"}, 400},
		{"garbage", []string{"soon"}, 400},
		{"empty", []string{""}, 400},
		{"list", []string{"5000, 6000"}, 400},
		{"two headers", []string{"5000", "6000"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.values != nil {
				h["Ledger-Timeout"] = tc.values
			}
			tries := 1
			if tc.want == 200 {
				tries = 20
			}
			for range tries {
				status, code := postLog(t, base, h)
				if !assert.Equal(t, tc.want, status, "code %q", code) {
					return
				}
				if tc.want == 400 {
					assert.Equal(t, "bad_request", code)
				}
			}
		})
	}
}

// serveRaw runs Server.Serve (with its real timeouts) over a fresh
// directory on 127.0.0.1 and returns the address; alice has created
// hardeningOp. The server stops when the test ends.
func serveRaw(t *testing.T, o ledger.ServerOptions) string {
	t.Helper()
	o.BasePath = t.TempDir()
	srv := ledger.NewServer(o)
	require.NoError(t, srv.Err())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
		srv.Close()
	})
	base := "http://" + ln.Addr().String()
	r := rawRequest{path: "/operation/create", token: "Bearer " + o.Token, body: `{` + whoJSON("alice") + `,"operationId":"` + hardeningOp + `"}`}.do(t, base)
	require.Equal(t, http.StatusOK, r.status, "create: %s", r.body)
	return ln.Addr().String()
}

// TestServerAnswersBeforeTheBody writes only the head of requests that
// declare a body, on raw connections, and reads the answer with a
// deadline: a body too large by its Content-Length (with or without
// Expect: 100-continue), or a request refused before its body matters,
// is answered at once, without the server waiting for a body byte, and
// the connection is closed after it.
func TestServerAnswersBeforeTheBody(t *testing.T) {
	addr := serveRaw(t, ledger.ServerOptions{Token: "tok"})
	for _, tc := range []struct {
		name, head string
		want       int
		code       string
	}{
		{"2 MiB", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n", 413, "too_large"},
		{"2 MiB expecting 100-continue", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n", 413, "too_large"},
		{"one byte too many", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: 1048577\r\n", 413, "too_large"},
		{"small body, wrong token", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tik\r\nContent-Type: application/json\r\nContent-Length: 100\r\n", 401, "unauthorized"},
		{"small body, unknown path", "POST /operation/explode HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: 100\r\n", 404, "not_found"},
		{"small body, not JSON", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n", 415, "unsupported_media"},
		{"small body, bad timeout", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nLedger-Timeout: -1\r\nContent-Length: 100\r\n", 400, "bad_request"},
		{"chunked, wrong token", "POST /operation/log HTTP/1.1\r\nAuthorization: Bearer tik\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n", 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, tc.head+"Host: "+addr+"\r\n\r\n")
			require.NoError(t, err)
			// The server's read timeout is 30s: an answer within 10s
			// did not wait for the body.
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			require.NoError(t, err, "no answer while the body is unsent")
			defer res.Body.Close()
			var e struct{ Code string }
			require.NoError(t, json.NewDecoder(res.Body).Decode(&e))
			assert.Equal(t, tc.want, res.StatusCode)
			assert.Equal(t, tc.code, e.Code)
			assert.True(t, res.Close, "the connection is kept for a body the server will not read")
		})
	}
}

// TestServerBearerScheme sends Authorization headers to a server with a
// token: the scheme is case-insensitive (RFC 7235) and may be followed by
// several spaces; an empty, wrong, partial or doubled credential is a 401
// with a Bearer challenge.
func TestServerBearerScheme(t *testing.T) {
	base := startHardeningServer(t)
	for _, tc := range []struct {
		name   string
		values []string // Authorization lines
		want   int
	}{
		{"canonical", []string{"Bearer tok"}, 200},
		{"lower case", []string{"bearer tok"}, 200},
		{"upper case", []string{"BEARER tok"}, 200},
		{"mixed case", []string{"bEaReR tok"}, 200},
		{"two spaces", []string{"Bearer  tok"}, 200},
		{"none", nil, 401},
		{"empty header", []string{""}, 401},
		{"scheme only", []string{"Bearer"}, 401},
		{"scheme and spaces", []string{"Bearer    "}, 401},
		{"no space", []string{"Bearertok"}, 401},
		{"tab", []string{"Bearer\ttok"}, 401},
		{"wrong token", []string{"bearer tik"}, 401},
		{"token twice", []string{"Bearer tok tok"}, 401},
		{"other scheme", []string{"Basic tok"}, 401},
		{"scheme prefix", []string{"Bear tok"}, 401},
		{"bare token", []string{"tok"}, 401},
		{"two headers, right first", []string{"Bearer tok", "Bearer tik"}, 401},
		{"two headers, both right", []string{"Bearer tok", "Bearer tok"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+"/operation/log", strings.NewReader(logBody))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			if tc.values != nil {
				req.Header["Authorization"] = tc.values
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			var e struct{ Code string }
			_ = json.NewDecoder(res.Body).Decode(&e) // a reply without a code has none
			assert.Equal(t, tc.want, res.StatusCode)
			if tc.want == 401 {
				assert.Equal(t, "unauthorized", e.Code)
				assert.True(t, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer "), "challenge %q", res.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestServerTokenThatCannotBeSent checks that a server token a client
// could not send in an Authorization header (empty once trimmed, or with
// a space or control byte) is refused by NewServer, naming the field.
func TestServerTokenThatCannotBeSent(t *testing.T) {
	for _, tok := range []string{" ", "  \t", "a b", "tok ", " tok", "to\nk", "tok\x00", "tok\x7f"} {
		srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir(), Token: tok})
		if assert.Error(t, srv.Err(), "token %q", tok) {
			assert.Contains(t, srv.Err().Error(), "ServerOptions.Token")
		}
		srv.Close()
	}
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir(), Token: "Zm9v-_.~+/=é"})
	assert.NoError(t, srv.Err())
	srv.Close()
}

// TestServerKeepsTheConnectionAfterABodyItRead checks the other side of
// TestServerAnswersBeforeTheBody: an error found after the whole body was
// read (here an unknown operation) leaves the connection open for the
// next request.
func TestServerKeepsTheConnectionAfterABodyItRead(t *testing.T) {
	addr := serveRaw(t, ledger.ServerOptions{Token: "tok"})
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	br := bufio.NewReader(conn)
	body := `{` + whoJSON("bob") + `,"operationId":"20240101T00:00:00.000-nobody-00000000","message":"m"}`
	for i := range 2 {
		_, err = fmt.Fprintf(conn, "POST /operation/log HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		res, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "request %d", i)
		_, err = io.Copy(io.Discard, res.Body)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusNotFound, res.StatusCode)
		assert.False(t, res.Close, "request %d: the connection is closed after an error", i)
	}
}
