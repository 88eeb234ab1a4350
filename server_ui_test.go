package ledger_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// get sends a GET with the client c (and a Host header, if given) and
// returns the status, the body and the response.
func get(t *testing.T, c *http.Client, u, host string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	res, err := c.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b), res
}

// noRedirect is a client that keeps a cookie jar and does not follow
// redirects.
func noRedirect(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestUITokenless: without a token the dashboard answers requests to the
// server's IP address, and refuses those by another host name.
func TestUITokenless(t *testing.T) {
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir()})
	code, body, res := get(t, http.DefaultClient, url+"/ui", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "No live operations")
	assert.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
	assert.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	code, body, _ = get(t, http.DefaultClient, url+"/ui", "rebound.example")
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body, "only requests to an IP address or localhost")
	code, _, _ = get(t, http.DefaultClient, url+"/ui/list", "rebound.example")
	assert.Equal(t, http.StatusForbidden, code)
	code, _, res = get(t, http.DefaultClient, url+"/ui/assets/app.js", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "text/javascript; charset=utf-8", res.Header.Get("Content-Type"))
}

// TestUIToken: with a token the dashboard asks for it in a form, keeps a
// session cookie that is not the token and opens the dashboard only; the
// request log never shows the token, even when it is put in a URL.
func TestUIToken(t *testing.T) {
	const token = "ui-very-secret-token"
	var logs logSink
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: t.TempDir(), Token: token, Logger: logs.logger()})
	c := noRedirect(t)

	code, body, _ := get(t, c, base+"/ui", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, `<form method="post" action="/ui/login">`)
	code, _, _ = get(t, c, base+"/ui?token="+token, "")
	assert.Equal(t, http.StatusUnauthorized, code, "a token in a URL is not taken")
	code, _, _ = get(t, c, base+"/ui/list", "")
	assert.Equal(t, http.StatusUnauthorized, code)

	res, err := c.PostForm(base+"/ui/login", url.Values{"token": {"wrong"}})
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	res, err = c.PostForm(base+"/ui/login", url.Values{"token": {token}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	assert.Equal(t, "/ui", res.Header.Get("Location"))
	cookie := res.Header.Get("Set-Cookie")
	assert.Contains(t, cookie, "HttpOnly")
	assert.Contains(t, cookie, "SameSite=Strict")
	assert.Contains(t, cookie, "Path=/ui")
	assert.NotContains(t, cookie, token)

	code, body, _ = get(t, c, base+"/ui", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Live operations")
	code, _, _ = get(t, c, base+"/ui/list", "")
	assert.Equal(t, http.StatusOK, code)

	// The cookie is for the dashboard: the protocol wants the token.
	u, err := url.Parse(base)
	require.NoError(t, err)
	sess := c.Jar.Cookies(&url.URL{Scheme: "http", Host: u.Host, Path: "/ui"})
	require.Len(t, sess, 1)
	req, err := http.NewRequest(http.MethodGet, base+"/view/operations", nil)
	require.NoError(t, err)
	req.AddCookie(sess[0])
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)

	// A bearer token opens the dashboard too (scripts, curl).
	req, err = http.NewRequest(http.MethodGet, base+"/ui/list", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)

	logs.mu.Lock()
	defer logs.mu.Unlock()
	assert.Contains(t, logs.buf.String(), `"path":"/ui/login"`, "the request log is on")
	assert.NotContains(t, logs.buf.String(), token, "the request log shows the token")
	assert.NotContains(t, logs.buf.String(), "token=", "the request log shows a query")
}

// TestUIPages: the list and an operation's page show what the ledger
// holds: participants, calls, temp resources, log and the timeline with
// one bar per call; the fragments are the pages' parts.
func TestUIPages(t *testing.T) {
	dir := t.TempDir()
	base := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	ctx := context.Background()
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "alice", HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly <build>"})
	require.NoError(t, err)
	c1, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "compile"})
	require.NoError(t, err)
	require.NoError(t, c1.End(ctx, 1))
	c2, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "lint", Contained: true})
	require.NoError(t, err)
	require.NoError(t, c2.Fail(ctx, errors.New("style")))
	_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "test"})
	require.NoError(t, err)
	require.NoError(t, op.Log(ctx, ledger.LogWarning, "slow disk"))

	code, body, _ := get(t, http.DefaultClient, base+"/ui", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, op.ID())
	assert.Contains(t, body, "nightly &lt;build&gt;")
	assert.Contains(t, body, `data-events="/ui/events"`)

	code, body, _ = get(t, http.DefaultClient, base+"/ui/operation?operationId="+op.ID(), "")
	require.Equal(t, http.StatusOK, code, body)
	for _, want := range []string{"<!doctype html>", `data-participant="alice"`, "compile", "lint", "test",
		`data-call="` + c2.ID() + `" data-status="failed"`, "slow disk", "Running calls <span class=\"count\">1</span>"} {
		assert.Contains(t, body, want)
	}
	assert.Equal(t, 3, strings.Count(body, `class="tl-bar `), "one bar per call")

	code, body, _ = get(t, http.DefaultClient, base+"/ui/operation/part?operationId="+op.ID(), "")
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, body, "<!doctype html>")
	assert.Equal(t, 3, strings.Count(body, `class="tl-bar `))

	code, body, res := get(t, http.DefaultClient, base+"/ui/timeline.svg?operationId="+op.ID(), "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "image/svg+xml", res.Header.Get("Content-Type"))
	assert.Equal(t, 3, strings.Count(body, `class="tl-bar `))

	code, body, _ = get(t, http.DefaultClient, base+"/ui/operation?operationId=20240101T00:00:00.000-x-00000000", "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "operation not found")
	code, _, _ = get(t, http.DefaultClient, base+"/ui/operation?operationId=../x", "")
	assert.Equal(t, http.StatusBadRequest, code)

	require.NoError(t, op.Complete(ctx))
	code, body, _ = get(t, http.DefaultClient, base+"/ui/operation?operationId="+op.ID(), "")
	require.Equal(t, http.StatusOK, code, "an archived operation has its page")
	assert.Contains(t, body, `data-finished="true"`)
	code, body, _ = get(t, http.DefaultClient, base+"/ui", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Recently archived")
}
