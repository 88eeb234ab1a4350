package dirstore_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// The Dart ledger's exclusive-create lock file, {id}.operation.json.lock
// (testdata/dart/PROTOCOL.md §4), on the fixtures of testdata/dart.

const dartOp = "20260314T09:15:02.417-dart_cli-5e0c9a3b"

// dartFixture reads a fixture file of testdata/dart named for dartOp.
func dartFixture(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "dart", filepath.FromSlash(strings.ReplaceAll(rel, "{id}", strings.ReplaceAll(dartOp, ":", "%3A")))))
	require.NoError(t, err)
	return b
}

// dartDoc writes the Dart state document of dartOp into dir and returns
// its path.
func dartDoc(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, dartOp+".operation.json")
	require.NoError(t, os.WriteFile(p, dartFixture(t, "dir/{id}.operation.json"), 0o644))
	return p
}

// dartLock puts the fixture lock file kind (local, server, empty) of
// dartOp into dir and returns its path.
func dartLock(t testing.TB, dir, kind string) string {
	t.Helper()
	p := filepath.Join(dir, dartOp+".operation.json.lock")
	require.NoError(t, os.WriteFile(p, dartFixture(t, "lockfile/"+kind+"/{id}.operation.json.lock"), 0o644))
	return p
}

// oneRecord is a change of one record.
func oneRecord(journal.Tail) (journal.Change, error) {
	return journal.Change{Records: []journal.Record{{Body: []byte(`{"ops":[]}`)}}}, nil
}

// A change waits while a Dart process holds its lock file, and when the
// wait is over fails with a *DartLockError that names the file and its
// holder, changing nothing; once the file is gone, the change is made.
func TestDartLockWaitedFor(t *testing.T) {
	for _, kind := range []string{"local", "server", "empty"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			doc := dartDoc(t, dir)
			lock := dartLock(t, dir, kind)
			d := open(t, dir, dirstore.Options{})
			defer d.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			_, err := d.Update(ctx, dartOp, 0, oneRecord)
			require.Error(t, err)
			assert.ErrorIs(t, err, journal.ErrLocked)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			var le *dirstore.DartLockError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, lock, le.Path)
			assert.Contains(t, err.Error(), lock)
			switch kind {
			case "local":
				assert.Equal(t, "dart_cli", le.ParticipantID)
				assert.Equal(t, 31337, le.PID)
				assert.Contains(t, err.Error(), "dart_cli (pid 31337)")
			case "server":
				assert.Equal(t, "ledger_server", le.ParticipantID)
				assert.Equal(t, 27001, le.PID)
			case "empty":
				assert.Empty(t, le.ParticipantID)
			}
			assert.FileExists(t, lock, "a Dart lock is never deleted")
			assert.NoFileExists(t, filepath.Join(dir, dartOp+".operation.journal"), "nothing is adopted")
			assert.Equal(t, dartFixture(t, "dir/{id}.operation.json"), mustRead(t, doc))

			// The Dart process is done: the waiting change goes ahead.
			time.AfterFunc(100*time.Millisecond, func() { os.Remove(lock) })
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tail, err := d.Update(ctx, dartOp, 0, oneRecord)
			require.NoError(t, err)
			assert.Equal(t, journal.Rev(2), tail.End(0), "the Dart document is position 1")
			assert.FileExists(t, filepath.Join(dir, dartOp+".operation.journal"))
		})
	}
}

// An operation with a journal waits for a Dart lock too.
func TestDartLockWaitedForWithJournal(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	ctx := context.Background()
	_, err := d.Create(ctx, dartOp, journal.Change{Records: []journal.Record{{Body: []byte(`{"ops":[]}`)}}})
	require.NoError(t, err)
	dartLock(t, dir, "local")
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = d.Update(short, dartOp, 0, oneRecord)
	var le *dirstore.DartLockError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "dart_cli", le.ParticipantID)
}

// The store takes the Dart lock itself while it adopts a Dart document
// and while it archives (a Dart process then waits), made as Dart makes
// it and marked as the store's, and deletes it after; a plain change of
// an operation with a journal does not take it.
func TestDartLockHeldWhileAdoptingAndArchiving(t *testing.T) {
	dir := t.TempDir()
	dartDoc(t, dir)
	lock := filepath.Join(dir, dartOp+".operation.json.lock")
	d := open(t, dir, dirstore.Options{})
	defer d.Close()

	var mu sync.Mutex
	var seen []string // at each append to the journal: the lock's writer, or "none"
	dirstore.SetWriteFault(func(path string) error {
		if !strings.Contains(path, dartOp) {
			return nil
		}
		w := "none"
		if b, err := os.ReadFile(lock); err == nil {
			var c struct{ ParticipantID, Writer string }
			if json.Unmarshal(b, &c) == nil && strings.HasPrefix(c.ParticipantID, "go-ledger@") {
				w = c.Writer
			} else {
				w = "foreign: " + string(b)
			}
		}
		mu.Lock()
		seen = append(seen, w)
		mu.Unlock()
		return nil
	})
	t.Cleanup(func() { dirstore.SetWriteFault(nil) })
	took := func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}

	ctx := context.Background()
	_, err := d.Update(ctx, dartOp, 0, oneRecord) // adopts
	require.NoError(t, err)
	assert.Equal(t, []string{"github.com/tomdist/ledger"}, took(), "held while adopting")
	assert.NoFileExists(t, lock)

	_, err = d.Update(ctx, dartOp, 2, oneRecord)
	require.NoError(t, err)
	assert.Equal(t, []string{"none"}, took(), "not held for a plain change")

	doc := []byte(`{"operationId":"` + dartOp + `","initiatorId":"dart_cli","startTime":"2026-03-14T09:15:02.418Z","operationState":"completed","aborted":false,"lastHeartbeat":"2026-03-14T09:15:02.418Z","callFrames":[],"tempResources":[]}`)
	_, err = d.Update(ctx, dartOp, 3, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: []byte(`{"ops":[]}`)}}, Snapshot: doc, Archive: true}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"github.com/tomdist/ledger", "github.com/tomdist/ledger"}, took(), "held while archiving: the records and the archive marker")
	assert.NoFileExists(t, lock)
	assert.NoFileExists(t, filepath.Join(dir, dartOp+".operation.json"))
}

// A Dart lock file of the store's own, left by a process that died while
// it held it, is deleted by the next change: the store makes one only
// under its own lock.
func TestOwnDartLockLeftByDeadProcessGoes(t *testing.T) {
	dir := t.TempDir()
	dartDoc(t, dir)
	lock := filepath.Join(dir, dartOp+".operation.json.lock")
	require.NoError(t, os.WriteFile(lock, []byte(`{"participantId":"go-ledger@h","pid":4000001,"timestamp":"2026-03-14T09:15:02Z","writer":"github.com/tomdist/ledger"}`), 0o644))
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := d.Update(ctx, dartOp, 0, oneRecord)
	require.NoError(t, err)
	assert.NoFileExists(t, lock)
}

// A reader that finds a Dart document torn while a Dart lock is there (a
// Dart process truncated it and has not written it all yet) reads it
// again until it is whole: it never takes a torn document for the state.
func TestDartTornDocumentReadAgain(t *testing.T) {
	dir := t.TempDir()
	doc := dartDoc(t, dir)
	full := mustRead(t, doc)
	require.NoError(t, os.WriteFile(doc, full[:len(full)/2], 0o644))
	lock := dartLock(t, dir, "local")
	d := open(t, dir, dirstore.Options{})
	defer d.Close()

	time.AfterFunc(150*time.Millisecond, func() {
		os.WriteFile(doc, full, 0o644)
		os.Remove(lock)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tail, err := d.Read(ctx, dartOp, 0)
	require.NoError(t, err)
	assert.Equal(t, full, tail.Snapshot)

	// A document that stays torn, with no Dart process at it, is
	// returned as it is: the reader reports it corrupt.
	require.NoError(t, os.WriteFile(doc, full[:10], 0o644))
	tail, err = d.Read(ctx, dartOp, 0)
	require.NoError(t, err)
	assert.Equal(t, full[:10], tail.Snapshot)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
