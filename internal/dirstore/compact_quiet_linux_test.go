package dirstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/journal"
)

// TestCompactionShowsNothingToTheLoudWatch: the watch of loud changes
// sees no event at all from quiet changes that compact (the journal and
// the state document replaced through temps): not only are its
// subscribers not woken, its own goroutine is not either, in any process
// that watches. Its events come in order, so once the name of a loud
// change has come, any event of the compactions before it has too.
func TestCompactionShowsNothingToTheLoudWatch(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	require.NoError(t, err)
	defer d.Close()
	ctx := context.Background()
	rec := []journal.Record{{Time: time.Now(), Body: []byte(`{}`)}}
	for _, op := range []string{"busy", "other"} {
		_, err := d.Create(ctx, op, journal.Change{Records: rec, Snapshot: []byte(`{"n":0}`)})
		require.NoError(t, err)
	}

	var mu sync.Mutex
	var names []string
	loud := make(chan struct{}, 1)
	stop, err := watchLoud(dir, func(name string) {
		mu.Lock()
		defer mu.Unlock()
		names = append(names, name)
		if name == journalName("other") {
			loud <- struct{}{}
		}
	}, func() { t.Error("events lost") }, func() {})
	require.NoError(t, err)
	defer stop()

	for range 3 {
		_, err := d.Update(ctx, "busy", 0, func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: rec, Snapshot: []byte(`{"n":1}`), Quiet: true}, nil
		})
		require.NoError(t, err)
	}
	_, err = d.Update(ctx, "other", 0, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: rec}, nil
	})
	require.NoError(t, err)
	select {
	case <-loud:
	case <-time.After(10 * time.Second):
		t.Fatal("the loud change was not seen")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{journalName("other")}, names, "what the watch of loud changes saw")
}
