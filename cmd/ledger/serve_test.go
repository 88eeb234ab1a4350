package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeObservability: serve with a token and --log-format json serves
// /metrics to the token, /ui behind its login form, and logs JSON records
// on stderr, one per request with --debug, none showing the token.
func TestServeObservability(t *testing.T) {
	const token = "serve-obs-token"
	dir := t.TempDir()
	t.Setenv("LEDGER_TOKEN", "")
	pr, pw := io.Pipe()
	stderr := &syncWriter{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--addr", "127.0.0.1:0", "--token", token, "--debug", "--log-format", "json"}, pw, stderr)
		pw.Close()
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, exitOK, code, "stderr: %s", stderr)
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr)
	go io.Copy(io.Discard, pr)
	base := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))

	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(body), `ledger_operations{state="live"} 0`)

	res, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)

	res, err = http.Get(base + "/ui")
	require.NoError(t, err)
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	assert.Contains(t, string(body), "<form")
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar}
	res, err = browser.PostForm(base+"/ui/login", url.Values{"token": {token}})
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "signed in and sent on to /ui")

	var records []map[string]any
	waitWritten(t, stderr, "the request log", func(log string) bool {
		records = records[:0]
		for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
			var r map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &r), "not a JSON record: %s", l)
			records = append(records, r)
		}
		return len(records) >= 6 // serving, 4 requests (and the redirected one)
	})
	assert.Equal(t, "serving", records[0]["msg"])
	paths := map[string]bool{}
	for _, r := range records {
		if p, ok := r["path"].(string); ok {
			paths[p] = true
		}
	}
	assert.True(t, paths["/metrics"] && paths["/ui"] && paths["/ui/login"], "%v", paths)
	assert.NotContains(t, stderr.String(), token)
}
