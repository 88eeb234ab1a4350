package ledger_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/proclocks"
)

// flockWaiters counts the flocks that wait for file.
func flockWaiters(t *testing.T, file string) int {
	t.Helper()
	n, err := proclocks.Waiters(file)
	require.NoError(t, err)
	return n
}

// TestMetricsLockWait: a change of the server that waits for the lock of
// its operation (held here by another process's flock) is counted in
// ledger_lock_wait_seconds; changes that found it free are not.
func TestMetricsLockWait(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	ctx := context.Background()
	l, err := ledger.NewRemoteClient(ctx, ledger.Options{ParticipantID: "writer", ServerURL: url, HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.Log(ctx, ledger.LogInfo, "the lock is free"))
	assert.Zero(t, scrape(t, url, "")["ledger_lock_wait_seconds_count"])

	lock := filepath.Join(dir, op.ID()+".operation.lock")
	fl := flock.New(lock)
	require.NoError(t, fl.Lock())
	done := make(chan error, 1)
	go func() { done <- op.Log(ctx, ledger.LogInfo, "the lock is held") }()
	waitFor(t, 10*time.Second, "the server's change to queue for the lock", func() bool { return flockWaiters(t, lock) > 0 })
	require.NoError(t, fl.Unlock())
	require.NoError(t, <-done)
	m := scrape(t, url, "")
	assert.Equal(t, 1.0, m["ledger_lock_wait_seconds_count"])
	assert.Positive(t, m["ledger_lock_wait_seconds_sum"])
}
