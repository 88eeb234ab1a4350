package dirstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// TestWatchLoudSleepsThroughQuietChanges: on Linux a WatchLoud channel
// receives nothing for quiet appends of another process's store. The
// watch delivers its events in order, so once a loud change of a second
// operation has woken its channel, a wake-up for the quiet ones before it
// would be pending already.
func TestWatchLoudSleepsThroughQuietChanges(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir, dirstore.Options{}), open(t, dir, dirstore.Options{})
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	change := func(quiet bool) func(journal.Tail) (journal.Change, error) {
		return func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: []journal.Record{{Time: time.Now(), Body: []byte(`{"x":1}`)}}, Quiet: quiet}, nil
		}
	}
	for _, op := range []string{"busy", "other"} {
		_, err := b.Create(ctx, op, journal.Change{Records: []journal.Record{{Time: time.Now(), Body: []byte(`{}`)}}})
		require.NoError(t, err)
	}
	busy, err := a.WatchLoud(ctx, "busy")
	require.NoError(t, err)
	other, err := a.WatchLoud(ctx, "other")
	require.NoError(t, err)
	all, err := a.Watch(ctx, "busy")
	require.NoError(t, err)
	drain(busy)
	drain(other)

	for range 3 {
		_, err := b.Update(ctx, "busy", 0, change(true))
		require.NoError(t, err)
	}
	woken(t, all, "quiet appends, on Watch")
	_, err = b.Update(ctx, "other", 0, change(false))
	require.NoError(t, err)
	woken(t, other, "a loud change")
	select {
	case <-busy:
		assert.Fail(t, "WatchLoud woke for quiet appends")
	default:
	}

	_, err = b.Update(ctx, "busy", 0, change(false))
	require.NoError(t, err)
	woken(t, busy, "a loud change of the busy operation")
}
