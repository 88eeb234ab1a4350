//go:build unix

package dirstore_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// unblockFIFO opens the FIFO at path for reading and writing, which
// releases anyone blocked opening it for either, until the returned
// function closes it.
func unblockFIFO(path string) func() {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return func() {}
	}
	return func() { f.Close() }
}

// TestFIFOInPlaceOfStoreFiles puts a FIFO, which anyone who may write
// the directory can make, where the store keeps a file of an operation:
// an open of a FIFO blocks until someone opens its other end, so a store
// that opens it plainly hangs, holding the operation's lock for every
// other writer. Every call returns, with an error where it cannot do its
// work.
func TestFIFOInPlaceOfStoreFiles(t *testing.T) {
	const id = "20261201T00:00:00.000-fifo-00000001"
	ctx := context.Background()
	names := []string{
		id + ".operation.journal", id + ".operation.json", id + ".operation.log",
		id + ".operation.debug.log", id + ".operation.lock", id + ".live", id + ".operation.json.lock",
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			d := open(t, dir, dirstore.Options{})
			defer d.Close()
			rec := journal.Record{Body: []byte(`{}`), Log: []journal.LogLine{{Level: "INFO", Participant: "p", Message: "m"}, {Level: "DEBUG", Participant: "p", Message: "m"}}}
			_, err := d.Create(ctx, id, journal.Change{Records: []journal.Record{rec}, Snapshot: []byte(`{}`)})
			require.NoError(t, err)
			path := filepath.Join(dir, name)
			require.NoError(t, os.RemoveAll(path))
			require.NoError(t, syscall.Mkfifo(path, 0o644))

			calls := map[string]func(context.Context) error{
				"Read": func(ctx context.Context) error { _, err := d.Read(ctx, id, 0); return err },
				"Update": func(ctx context.Context) error {
					_, err := d.Update(ctx, id, 0, func(journal.Tail) (journal.Change, error) {
						return journal.Change{Records: []journal.Record{rec}}, nil
					})
					return err
				},
				"ReadLog":      func(ctx context.Context) error { _, err := d.ReadLog(ctx, id, false); return err },
				"ReadDebugLog": func(ctx context.Context) error { _, err := d.ReadLog(ctx, id, true); return err },
				"Vitals":       func(ctx context.Context) error { _, err := d.Vitals(ctx, id); return err },
				"Beat":         func(ctx context.Context) error { return d.Beat(ctx, id, journal.Member{ID: "r", PID: 1, Host: "h"}) },
				"List":         func(ctx context.Context) error { _, err := d.List(ctx, false); return err },
			}
			// What cannot do its work says that the file is not what it
			// should be.
			corrupt := map[string]bool{
				names[0] + " Read": true, names[0] + " Update": true, names[0] + " ReadLog": true,
				names[2] + " ReadLog": true, names[3] + " ReadDebugLog": true,
			}
			for what, call := range calls {
				ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				done := make(chan error, 1)
				go func() { done <- call(ctx) }()
				select {
				case err := <-done:
					if corrupt[name+" "+what] {
						assert.ErrorIs(t, err, journal.ErrCorrupt, "%s with a FIFO at %s", what, name)
					}
				case <-time.After(10 * time.Second):
					assert.Fail(t, "hangs", "%s hangs on a FIFO at %s", what, name)
					closeFIFO := unblockFIFO(path)
					<-done
					closeFIFO()
				}
				cancel()
			}
		})
	}
}
