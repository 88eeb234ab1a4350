package dirstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// woken waits for a value on ch, failing the test after a while.
func woken(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		require.True(t, ok, "the channel closed instead of waking for %s", what)
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake-up for %s", what)
	}
}

// drain takes a pending wake-up, if any.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// TestWatchAll: a WatchAll of one Dir wakes when another Dir on the same
// directory creates, changes and archives operations, and its channel
// closes when its context ends.
func TestWatchAll(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir, dirstore.Options{}), open(t, dir, dirstore.Options{})
	defer a.Close()
	defer b.Close()
	var _ journal.ListWatcher = a
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := a.WatchAll(ctx)
	require.NoError(t, err)

	rec := func() journal.Change {
		return journal.Change{Records: []journal.Record{{Time: time.Now(), Body: []byte(`{"x":1}`)}}}
	}
	_, err = b.Create(ctx, "op-1", rec())
	require.NoError(t, err)
	woken(t, ch, "a new operation")
	drain(ch)
	_, err = b.Create(ctx, "op-2", rec())
	require.NoError(t, err)
	woken(t, ch, "a second operation")
	drain(ch)
	_, err = b.Update(ctx, "op-1", 0, func(journal.Tail) (journal.Change, error) { return rec(), nil })
	require.NoError(t, err)
	woken(t, ch, "a change")
	drain(ch)
	_, err = b.Update(ctx, "op-2", 0, func(journal.Tail) (journal.Change, error) {
		c := rec()
		c.Snapshot, c.Archive = []byte(`{"operationId":"op-2"}`), true
		return c, nil
	})
	require.NoError(t, err)
	woken(t, ch, "an archive")

	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel did not close when its context ended")
		}
	}
}
