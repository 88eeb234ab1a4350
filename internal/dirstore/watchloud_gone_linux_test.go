package dirstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/journal"
)

// TestLoudWatchGoneHandsOver: when the watch of loud changes ends by
// itself, its subscribers are woken and then served by the watch of every
// change, quiet appends included, rather than left without wake-ups.
func TestLoudWatchGoneHandsOver(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir, Options{})
	require.NoError(t, err)
	defer a.Close()
	b, err := Open(dir, Options{})
	require.NoError(t, err)
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = b.Create(ctx, "op", journal.Change{Records: []journal.Record{{Time: time.Now(), Body: []byte(`{}`)}}})
	require.NoError(t, err)
	ch, err := a.WatchLoud(ctx, "op")
	require.NoError(t, err)
	a.watch.loudGone()
	wait := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake-up: %s", what)
		}
	}
	wait("when the watch ended")
	_, err = b.Update(ctx, "op", 0, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Time: time.Now(), Body: []byte(`{}`)}}, Quiet: true}, nil
	})
	require.NoError(t, err)
	wait("a quiet append, through the watch of every change")
}
