package dirstore_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/proclocks"
	"github.com/tomdist/ledger/journal"
)

// flockWaiters counts the flocks that wait for file.
func flockWaiters(t *testing.T, file string) int {
	t.Helper()
	n, err := proclocks.Waiters(file)
	require.NoError(t, err)
	return n
}

// TestOnLockWait: a change that waits for the lock another process (here
// another Dir) holds reports how long it waited; one that finds the lock
// free reports nothing.
func TestOnLockWait(t *testing.T) {
	dir := t.TempDir()
	const id = "20261201T00:00:00.000-waiter-00000001"
	var mu sync.Mutex
	var waits []time.Duration
	holder := open(t, dir, dirstore.Options{})
	defer holder.Close()
	waiter := open(t, dir, dirstore.Options{OnLockWait: func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
	}})
	defer waiter.Close()
	ctx := context.Background()
	rec := func() journal.Change {
		return journal.Change{Records: []journal.Record{{Time: time.Now(), Body: []byte(`{"x":1}`)}}}
	}
	_, err := holder.Create(ctx, id, rec())
	require.NoError(t, err)
	_, err = waiter.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) { return rec(), nil })
	require.NoError(t, err)
	mu.Lock()
	assert.Empty(t, waits, "the lock was free")
	mu.Unlock()

	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 2)
	go func() {
		_, err := holder.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) {
			close(held)
			<-release
			return rec(), nil
		})
		done <- err
	}()
	<-held
	go func() {
		_, err := waiter.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) { return rec(), nil })
		done <- err
	}()
	lock := filepath.Join(dir, id+".operation.lock")
	deadline := time.Now().Add(10 * time.Second)
	for flockWaiters(t, lock) == 0 {
		require.True(t, time.Now().Before(deadline), "the waiter never queued for the lock")
		time.Sleep(2 * time.Millisecond)
	}
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, waits, 1)
	assert.Positive(t, waits[0])
}
