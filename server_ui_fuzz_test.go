package ledger_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// uiFuzzPaths are the dashboard's routes FuzzUIRequest picks from (its
// stream left out: it lasts). Only append: the seeds name them by index.
var uiFuzzPaths = []string{
	"/ui", "/ui/", "/ui/list", "/ui/operation", "/ui/operation/part", "/ui/timeline.svg", // 0-5
	"/ui/login", "/ui/assets/app.js", "/ui/assets/style.css", "/ui/assets/timeline.css", ledger.PathMetrics, // 6-10
}

const uiFuzzToken = "fuzz-ui-token-77"

// FuzzUIRequest sends the dashboard of a server with a token requests of
// any method, path, query, host, Authorization, cookie (none, the right
// session, or any value), Content-Type and body. It never panics nor
// answers 500; it serves a page, a fragment or the metrics (200), or signs
// in (303), only to a request with the token as a bearer token, the
// session cookie, or (to sign in) the token in a form; a token in a URL
// opens nothing; no reply shows the token.
func FuzzUIRequest(f *testing.F) {
	for _, s := range []struct {
		method, path byte
		query, host  string
		auth         string
		cookie       byte
		cookieValue  string
		contentType  string
		body         string
	}{
		{1, 0, "", "127.0.0.1", "", 0, "", "", ""},
		{1, 0, "token=" + uiFuzzToken, "127.0.0.1", "", 0, "", "", ""},
		{1, 3, "operationId=" + fuzzOp, "127.0.0.1", "Bearer " + uiFuzzToken, 0, "", "", ""},
		{1, 4, "operationId=" + fuzzOp, "localhost", "", 1, "", "", ""},
		{1, 5, "operationId=../x", "127.0.0.1", "", 1, "", "", ""},
		{0, 6, "", "127.0.0.1", "", 0, "", "application/x-www-form-urlencoded", "token=" + uiFuzzToken},
		{0, 6, "", "127.0.0.1", "", 0, "", "application/x-www-form-urlencoded", "token=wrong&token=" + uiFuzzToken},
		{0, 6, "token=" + uiFuzzToken, "127.0.0.1", "", 0, "", "text/plain", "token=" + uiFuzzToken},
		{1, 10, "", "127.0.0.1", "bearer  " + uiFuzzToken, 0, "", "", ""},
		{1, 2, "", "evil.example", "", 2, "0123", "", ""},
		{1, 7, "", "", "", 0, "", "", ""},
	} {
		f.Add(s.method, s.path, s.query, s.host, s.auth, s.cookie, s.cookieValue, s.contentType, s.body)
	}
	dir := f.TempDir()
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir, Token: uiFuzzToken})
	require.NoError(f, srv.Err())
	f.Cleanup(func() { srv.Close() })
	for _, q := range []struct{ path, body string }{
		{"/operation/create", `{"participantId":"alice","participantPid":100,"host":"h1","operationId":"` + fuzzOp + `"}`},
	} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, fuzzRequest(uiFuzzToken, q.path, q.body))
		require.Equal(f, http.StatusOK, w.Code, "%s: %s", q.path, w.Body)
	}
	session := uiSessionCookie(f, srv)

	f.Fuzz(func(t *testing.T, method, path byte, query, host, auth string, cookie byte, cookieValue, contentType, body string) {
		p := uiFuzzPaths[int(path)%len(uiFuzzPaths)]
		r := httptest.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], "/", strings.NewReader(body))
		r.URL = &url.URL{Path: p, RawQuery: query}
		r.RequestURI = r.URL.RequestURI()
		r.Host = host
		for k, v := range map[string]string{"Authorization": auth, "Content-Type": contentType} {
			if v != "" {
				r.Header[k] = strings.Split(v, "\n")
			}
		}
		switch cookie % 3 {
		case 1:
			r.AddCookie(session)
		case 2:
			r.Header.Set("Cookie", "ledger_session="+cookieValue)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r.WithContext(ctx))

		assert.NotContains(t, w.Body.String(), uiFuzzToken, "a reply shows the token")
		assert.NotContains(t, w.Header().Get("Set-Cookie"), uiFuzzToken, "the cookie holds the token")
		assert.True(t, slices.Contains([]int{200, 303, 400, 401, 403, 404, 405, 413, 415}, w.Code), "status %d: %s", w.Code, w.Body)
		if strings.HasPrefix(p, "/ui/assets/") || w.Code != http.StatusOK && w.Code != http.StatusSeeOther {
			return
		}
		scheme, rest, found := strings.Cut(auth, " ")
		bearer := len(r.Header.Values("Authorization")) == 1 && found && strings.EqualFold(scheme, "Bearer") &&
			strings.TrimLeft(rest, " ") == uiFuzzToken
		signIn := p == "/ui/login" && strings.Contains(body, uiFuzzToken)
		assert.True(t, bearer || cookie%3 == 1 || signIn, "%s %s served %d without the token", r.Method, r.URL, w.Code)
	})
}

// uiSessionCookie signs in to srv and returns its session cookie.
func uiSessionCookie(t testing.TB, srv *ledger.Server) *http.Cookie {
	r := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader("token="+uiFuzzToken))
	r.Host = "127.0.0.1"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	require.Equal(t, http.StatusSeeOther, w.Code, "%s", w.Body)
	cs := w.Result().Cookies()
	require.Len(t, cs, 1)
	return cs[0]
}
