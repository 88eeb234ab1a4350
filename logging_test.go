package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// logSink collects the records of a JSON slog handler.
type logSink struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// logger returns a logger that writes every level to s.
func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records with message msg.
func (s *logSink) records(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(s.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// TestLoggerVerdict: a participant killed with SIGKILL is declared crashed
// by the survivor, whose Options.Logger hears of it with the victim and
// how its death was seen.
func TestLoggerVerdict(t *testing.T) {
	e := localEnv(t)
	var sink logSink
	l := e.Open("survivor", ledger.Options{Logger: sink.logger()})
	ctx := context.Background()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	p := startParticipant(t, e, op.ID(), "victim", "CONTAINED=1")
	p.kill9(t)
	waitFor(t, 10*time.Second, "the verdict in the log", func() bool { return len(sink.records("ledger: participant crashed")) > 0 })
	r := sink.records("ledger: participant crashed")[0]
	assert.Equal(t, "WARN", r["level"])
	assert.Equal(t, op.ID(), r["operation"])
	assert.True(t, strings.HasPrefix(r["victim"].(string), "victim/"), "victim %v", r["victim"])
	assert.Equal(t, "lease ended", r["seen"])
}

// TestLoggerHeartbeatError: a heartbeat error (the operation gone from
// under the participant) goes to the logger as well as to the callbacks.
func TestLoggerHeartbeatError(t *testing.T) {
	e := localEnv(t)
	var sink logSink
	l := e.Open("watcher", ledger.Options{Logger: sink.logger()})
	ctx := context.Background()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.SetAbortFlag(ctx, true))
	waitFor(t, 10*time.Second, "the abort in the log", func() bool { return len(sink.records("ledger: heartbeat error")) > 0 })
	r := sink.records("ledger: heartbeat error")[0]
	assert.Equal(t, "INFO", r["level"])
	assert.Equal(t, "abortFlagSet", r["type"])
	assert.Equal(t, op.ID(), r["operation"])
}

// TestLoggerRemoteRetriesAndReconnects: a RemoteClient logs the requests
// it sends again after a dropped connection, and the stream it opens
// again after it dropped.
func TestLoggerRemoteRetriesAndReconnects(t *testing.T) {
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir()})
	defer srv.Close()
	// net/http sends a request once more by itself when a connection it
	// reused turns out closed: two drops make sure the client sees one.
	proxy := &flakyProxy{next: srv, drop: 2, paths: map[string]bool{"/operation/state": true, "/operation/stream": true}, count: map[string]int{}}
	ts := httptest.NewServer(proxy)
	defer ts.Close()
	ctx := context.Background()
	var sink logSink
	l, err := ledger.NewRemoteClient(ctx, ledger.Options{
		ParticipantID: "flaky", ServerURL: ts.URL, Logger: sink.logger(),
		Retry: ledger.RetryPolicy{Attempts: 3, Backoff: time.Millisecond},
	})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	_, err = op.State(ctx)
	require.NoError(t, err)

	retried := sink.records("ledger: request retried")
	require.NotEmpty(t, retried)
	assert.Equal(t, "/operation/state", retried[0]["path"])
	assert.EqualValues(t, 2, retried[0]["attempt"])
	waitFor(t, 10*time.Second, "the reconnect in the log", func() bool { return len(sink.records("ledger: stream reconnecting")) > 0 })
	assert.Equal(t, op.ID(), sink.records("ledger: stream reconnecting")[0]["operation"])
}

// TestLoggerNilIsSilent: without a Logger nothing is logged, through
// slog's default logger either.
func TestLoggerNilIsSilent(t *testing.T) {
	var sink logSink
	old := slog.Default()
	slog.SetDefault(sink.logger())
	defer slog.SetDefault(old)
	e := localEnv(t)
	l := e.Open("quiet", ledger.Options{})
	ctx := context.Background()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.SetAbortFlag(ctx, true))
	_, err = op.Heartbeat(ctx)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	sink.mu.Lock()
	defer sink.mu.Unlock()
	assert.Empty(t, sink.buf.String())
}
