package dirstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// reuseInode runs compact, which replaces the journal at path by a new
// file, and then puts the new file's bytes under the old file's inode,
// as a file system that hands a freed inode number to the next file does
// (ext4 often does, but not on demand): the old inode is kept alive by a
// hard link until the new content is written into it and it is renamed
// over the journal.
func reuseInode(t *testing.T, path string, compact func()) {
	keep := filepath.Join(filepath.Dir(path), "old-inode")
	require.NoError(t, os.Link(path, keep))
	before, err := os.Stat(path)
	require.NoError(t, err)
	compact()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := os.OpenFile(keep, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = f.Write(b)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Rename(keep, path))
	after, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after), "the journal has its old inode")
}

// update appends record n to id, with a snapshot if snap, for a writer
// that has seen the records up to after.
func update(t *testing.T, d *dirstore.Dir, id string, after, n int, snap bool) {
	_, err := d.Update(context.Background(), id, journal.Rev(after), func(journal.Tail) (journal.Change, error) {
		c := journal.Change{Records: []journal.Record{{Body: []byte(fmt.Sprintf(`{"n":%d}`, n))}}}
		if snap {
			c.Snapshot = []byte(fmt.Sprintf(`{"snap":%d,"pad":"%0100d"}`, n, 0))
		}
		return c, nil
	})
	require.NoError(t, err)
}

// TestReaderPositionSurvivesInodeReuse: another Dir compacts the journal
// into a new file that gets the journal's old inode number; a reader
// that remembered its place in the old file reads the new one from its
// start, not from an offset of the old one.
func TestReaderPositionSurvivesInodeReuse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const id = "20261201T00:00:00.000-reuse-00000001"
	path := filepath.Join(dir, id+".operation.journal")
	reader := open(t, dir, dirstore.Options{})
	defer reader.Close()
	writer := open(t, dir, dirstore.Options{})
	defer writer.Close()
	_, err := writer.Create(ctx, id, journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}})
	require.NoError(t, err)
	n := 1
	for range 5 {
		n++
		update(t, writer, id, n-1, n, false)
	}
	got, err := reader.Read(ctx, id, 0)
	require.NoError(t, err)
	require.Len(t, got.Records, n)

	reuseInode(t, path, func() { n++; update(t, writer, id, n-1, n, true) })
	// Records after the compaction, so that the file is longer than the
	// reader's old position.
	for range 5 {
		n++
		update(t, writer, id, n-1, n, false)
	}
	got, err = reader.Read(ctx, id, got.End(0))
	require.NoError(t, err, "a reader of a journal replaced behind its back")
	assert.Equal(t, journal.Rev(n), got.End(0))
	assert.NotNil(t, got.Snapshot, "a reader behind the snapshot gets it")
}

// TestWriterPositionSurvivesInodeReuse: as above, for a writer whose old
// position falls inside the last line of the new file: it must not take
// that line for a torn one and cut it (the record is another process's,
// acknowledged), nor fail.
func TestWriterPositionSurvivesInodeReuse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const id = "20261201T00:00:00.000-reuse-00000002"
	path := filepath.Join(dir, id+".operation.journal")
	stale := open(t, dir, dirstore.Options{})
	defer stale.Close()
	writer := open(t, dir, dirstore.Options{})
	defer writer.Close()
	_, err := writer.Create(ctx, id, journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}})
	require.NoError(t, err)
	n := 1
	for range 20 {
		n++
		update(t, stale, id, n-1, n, false)
	}
	seen := n // all the stale writer knows
	fi, err := os.Stat(path)
	require.NoError(t, err)
	staleEnd := fi.Size()

	reuseInode(t, path, func() { n++; update(t, writer, id, n-1, n, true) })
	for {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		if fi.Size() > staleEnd {
			break
		}
		n++
		update(t, writer, id, n-1, n, false)
	}
	n++
	update(t, stale, id, seen, n, false)
	got, err := writer.Read(ctx, id, 0)
	require.NoError(t, err)
	require.NotEmpty(t, got.Records)
	assert.Equal(t, journal.Rev(n), got.End(0), "records were lost or the journal broken")
	for i, r := range got.Records {
		assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, int(r.Rev)), string(r.Body), "record %d", i)
	}
}
