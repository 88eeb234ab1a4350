package ledger_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/wire"
)

// fuzzMethods and fuzzPaths are what FuzzServerRequest picks from by
// index (modulo the length). The seeds name them by index: only append.
var (
	fuzzMethods = []string{
		http.MethodPost, http.MethodGet, http.MethodHead, http.MethodPut,
		http.MethodDelete, http.MethodOptions, http.MethodPatch, "post",
	}
	fuzzPaths = []string{
		wire.PathHealth, wire.PathStatus, // 0, 1
		wire.PathCreate, wire.PathJoin, wire.PathLeave, wire.PathComplete, // 2-5
		wire.PathHeartbeat, wire.PathAbort, wire.PathState, wire.PathLog, // 6-9
		wire.PathCrash, wire.PathCleanedUp, wire.PathFinish, // 10-12
		wire.PathCallStart, wire.PathCallEnd, wire.PathCallFail, // 13-15
		wire.PathCallFrameCreate, wire.PathCallFrameDelete, // 16, 17
		wire.PathTempRegister, wire.PathTempUnregister, // 18, 19
		"/", "/operation/", "/Operation/Create", "/operation/create/", "/../operation/state", // 20-24
		wire.PathViewOperations, wire.PathViewDocument, wire.PathViewLog, // 25-27
	}
)

// The operation and call that exist when a fuzzed request arrives.
const (
	fuzzOp   = "20240115T10:30:00.123-alice-0a1b2c3d"
	fuzzCall = "call_alice_1_ab12"
)

// fuzzStatuses are the answers the protocol has for requests to a
// server that works, good or bad.
var fuzzStatuses = []int{200, 400, 401, 403, 404, 405, 409, 413, 415}

// FuzzServerRequest sends one request of arbitrary method (by index),
// path (by index), body, Content-Type, Content-Length (-1: none),
// Ledger-Timeout, Authorization and Host to a fresh server with or
// without a token, through ServeHTTP. A header string is absent when
// empty, and each line of it is one header field. In bodies, $OUTSIDE
// and $DIR stand for a directory beside the ledger directory (holding a
// file "victim") and the ledger directory itself; a Content-Length equal
// to the length of the body follows the substitution.
//
// The server, in which alice has created fuzzOp and started fuzzCall,
// never panics and answers with a status of the protocol: a 4xx for bad
// input, never a 500 (but lock_timeout to a client that said it waits
// less than a second), and a JSON error that does not show the directory.
// Nothing outside the directory is created, changed or deleted, and the
// operation's state can still be read. Seeds:
// testdata/fuzz/FuzzServerRequest.
func FuzzServerRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, path uint8, body []byte, contentType string, contentLength int64, timeout, auth, host string, token bool) {
		root := t.TempDir()
		dir, outside := filepath.Join(root, "ledger"), filepath.Join(root, "outside")
		victim := filepath.Join(outside, "victim")
		require.NoError(t, os.Mkdir(outside, 0o755))
		require.NoError(t, os.WriteFile(victim, []byte("mine"), 0o644))
		o := ledger.ServerOptions{BasePath: dir, LockTimeout: 5 * time.Second}
		if token {
			o.Token = "tok"
		}
		srv := ledger.NewServer(o)
		require.NoError(t, srv.Err())
		defer srv.Close()
		fuzzSetup(t, srv, o.Token)

		sent := bytes.ReplaceAll(body, []byte("$OUTSIDE"), []byte(outside))
		sent = bytes.ReplaceAll(sent, []byte("$DIR"), []byte(dir))
		if contentLength == int64(len(body)) {
			contentLength = int64(len(sent))
		}
		r := httptest.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], fuzzPaths[int(path)%len(fuzzPaths)], nil)
		r.Host = host
		r.Body, r.ContentLength = declaredBody(sent, contentLength)
		for k, v := range map[string]string{"Content-Type": contentType, wire.HeaderTimeout: timeout, "Authorization": auth} {
			if v != "" {
				r.Header[k] = strings.Split(v, "\n")
			}
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)

		checkFuzzReply(t, w, dir, timeout)
		entries, err := os.ReadDir(root)
		require.NoError(t, err)
		assert.Len(t, entries, 2, "%s holds more than the ledger and outside", root)
		entries, err = os.ReadDir(outside)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "%s holds more than the victim", outside)
		b, err := os.ReadFile(victim)
		assert.NoError(t, err, "the victim outside the directory is gone")
		assert.Equal(t, "mine", string(b), "the victim outside the directory changed")
		q := fuzzRequest(o.Token, wire.PathState, `{"participantId":"alice","participantPid":100,"host":"h1","operationId":"`+fuzzOp+`"}`)
		w = httptest.NewRecorder()
		srv.ServeHTTP(w, q)
		assert.Equal(t, http.StatusOK, w.Code, "state after the request: %s", w.Body)
	})
}

// fuzzSetup has alice create fuzzOp and start fuzzCall.
func fuzzSetup(t *testing.T, srv *ledger.Server, token string) {
	who := `"participantId":"alice","participantPid":100,"host":"h1","operationId":"` + fuzzOp + `"`
	for _, q := range []struct{ path, body string }{
		{wire.PathCreate, `{` + who + `}`},
		{wire.PathCallStart, `{` + who + `,"callId":"` + fuzzCall + `"}`},
	} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, fuzzRequest(token, q.path, q.body))
		require.Equal(t, http.StatusOK, w.Code, "%s: %s", q.path, w.Body)
	}
}

// fuzzRequest is a well-formed POST of body to path.
func fuzzRequest(token, path, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Host = "127.0.0.1:19880"
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// declaredBody is the body net/http gives a handler when a client
// declared Content-Length cl (negative: none, as when chunked) and sent
// b: at most cl bytes, then io.ErrUnexpectedEOF if fewer came.
func declaredBody(b []byte, cl int64) (io.ReadCloser, int64) {
	switch {
	case cl < 0:
		return io.NopCloser(bytes.NewReader(b)), -1
	case cl <= int64(len(b)):
		return io.NopCloser(bytes.NewReader(b[:cl])), cl
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(b), iotestErr{io.ErrUnexpectedEOF})), cl
}

// iotestErr is a reader that fails with err.
type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }

// checkFuzzReply checks the answer to a fuzzed request: a status of the
// protocol with a JSON body, and for a failure a code and a message that
// does not show the directory.
func checkFuzzReply(t *testing.T, w *httptest.ResponseRecorder, dir, timeout string) {
	t.Helper()
	var e wire.Error
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), "reply %d is not JSON: %q", w.Code, w.Body)
	assert.NotContains(t, w.Body.String(), dir, "the reply shows the directory")
	if w.Code == http.StatusOK {
		return
	}
	assert.NotEmpty(t, e.Code, "failure %d without a code: %s", w.Code, w.Body)
	assert.True(t, strings.HasPrefix(e.Error, "ledger: "), "message %q", e.Error)
	if w.Code == http.StatusInternalServerError && e.Code == wire.CodeLockTimeout && shortTimeout(timeout) {
		return // the client gave the server less than a second
	}
	assert.True(t, slices.Contains(fuzzStatuses, w.Code), "status %d: %s", w.Code, w.Body)
}

// shortTimeout reports whether a Ledger-Timeout header (lines as
// FuzzServerRequest sends them) is one value of at most 999 ms.
func shortTimeout(h string) bool {
	h = strings.TrimLeft(h, "0")
	if h == "" || len(h) > 3 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if h[i] < '0' || h[i] > '9' {
			return false
		}
	}
	return true
}
