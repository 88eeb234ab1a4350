package dirstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

const foreignOp = "20261201T00:00:00.000-foreign-00000001"

// FuzzForeignWrite lets a foreign writer, who ignores the lock, append
// bytes to a journal, or cut it at a point (cut; a negative one counts
// from the end) and then append them, behind
// the back of Dirs that remember their positions in it (a reader and a
// writer) and in front of a fresh one. Reads and changes never panic and
// either work or fail with journal.ErrCorrupt; a change that works
// leaves a journal that a fresh Dir reads whole, ending with the
// change's record; and nothing but the operation's own files is there.
func FuzzForeignWrite(f *testing.F) {
	f.Add([]byte("0badc0de {\"rev\":4"), int64(-1))
	f.Add([]byte("garbage\n"), int64(-1))
	f.Add([]byte("garbage\nmore garbage\n"), int64(-1))
	f.Add([]byte{}, int64(40))
	f.Add([]byte("\n"), int64(100))
	f.Add([]byte("00000000 {\"rev\":3}\n"), int64(-1))
	f.Add([]byte("x"), int64(1<<20))
	// The last record rewritten in place, the file as long as before: a
	// writer that took it for the record it knows appended after a line
	// that fails its checksum, which made the journal unreadable.
	f.Add([]byte("1\n"), int64(-3))
	f.Fuzz(func(t *testing.T, tail []byte, cut int64) {
		sub := t.TempDir()
		ctx := context.Background()
		reader, writer := open(t, sub, dirstore.Options{}), open(t, sub, dirstore.Options{})
		defer reader.Close()
		defer writer.Close()
		body := func(s string) journal.Change {
			return journal.Change{Records: []journal.Record{{Body: []byte(s), Log: []journal.LogLine{{Level: "INFO", Participant: "p", Message: s}}}}}
		}
		_, err := writer.Create(ctx, foreignOp, body(`{"n":1}`))
		require.NoError(t, err)
		for _, s := range []string{`{"n":2}`, `{"n":3}`} {
			_, err = writer.Update(ctx, foreignOp, 0, func(journal.Tail) (journal.Change, error) { return body(s), nil })
			require.NoError(t, err)
		}
		_, err = reader.Read(ctx, foreignOp, 0)
		require.NoError(t, err)

		path := filepath.Join(sub, foreignOp+".operation.journal")
		fi, err := os.Stat(path)
		require.NoError(t, err)
		if cut < 0 {
			cut = fi.Size() + cut + 1 // -1 cuts nothing, -3 two bytes
		}
		if cut >= 0 && cut < fi.Size() {
			require.NoError(t, os.Truncate(path, cut))
		}
		fl, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		_, err = fl.Write(tail)
		require.NoError(t, err)
		require.NoError(t, fl.Close())

		fresh := open(t, sub, dirstore.Options{})
		defer fresh.Close()
		ok := func(err error) {
			if err != nil && !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("not a corrupt journal: %v", err)
			}
		}
		for _, d := range []*dirstore.Dir{reader, writer, fresh} {
			_, err := d.Read(ctx, foreignOp, 3)
			ok(err)
			_, err = d.Read(ctx, foreignOp, 1)
			ok(err)
		}
		for _, d := range []*dirstore.Dir{writer, fresh} {
			got, err := d.Update(ctx, foreignOp, 3, func(journal.Tail) (journal.Change, error) { return body(`{"n":"after"}`), nil })
			ok(err)
			if err != nil {
				continue
			}
			end := got.End(3)
			check := open(t, sub, dirstore.Options{})
			whole, err := check.Read(ctx, foreignOp, 0)
			check.Close()
			require.NoError(t, err, "a journal a change was appended to does not read")
			require.Equal(t, end, whole.End(0))
			require.Equal(t, `{"n":"after"}`, string(whole.Records[len(whole.Records)-1].Body))
		}
		ents, err := os.ReadDir(sub)
		require.NoError(t, err)
		for _, e := range ents {
			require.Contains(t, []string{
				foreignOp + ".operation.journal", foreignOp + ".operation.log", foreignOp + ".operation.lock", "~ledger-tmp",
			}, e.Name())
		}
		temps, err := os.ReadDir(filepath.Join(sub, "~ledger-tmp"))
		require.NoError(t, err)
		require.Empty(t, temps, "temp files left")
	})
}
