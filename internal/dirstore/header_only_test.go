package dirstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// TestJournalOfAHeaderAlone: a journal that is its header and nothing
// else (an operation created without records, or compacted to an empty
// snapshot with no record since) is a journal, not corruption: it reads,
// from any Dir, and takes records.
func TestJournalOfAHeaderAlone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	other := open(t, dir, dirstore.Options{})
	defer other.Close()
	const created = "20261201T00:00:00.000-empty-00000001"
	_, err := d.Create(ctx, created, journal.Change{})
	require.NoError(t, err)
	got, err := other.Read(ctx, created, 0)
	require.NoError(t, err)
	assert.Equal(t, journal.Rev(0), got.End(0))

	const compacted = "20261201T00:00:00.000-empty-00000002"
	_, err = d.Create(ctx, compacted, journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}})
	require.NoError(t, err)
	_, err = d.Update(ctx, compacted, 1, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Snapshot: []byte{}}, nil
	})
	require.NoError(t, err)
	got, err = other.Read(ctx, compacted, 0)
	require.NoError(t, err)
	assert.Equal(t, journal.Rev(1), got.End(0))

	for _, id := range []string{created, compacted} {
		tail, err := other.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) {
			return journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}}, nil
		})
		require.NoError(t, err, id)
		got, err := d.Read(ctx, id, 0)
		require.NoError(t, err, id)
		assert.Equal(t, tail.End(0), got.End(0), id)
	}
}
