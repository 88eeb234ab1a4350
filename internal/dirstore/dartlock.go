package dirstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/tomdist/ledger/journal"
)

// The Dart ledger guards {id}.operation.json with a lock file of its own,
// {id}.operation.json.lock: a Dart process creates it exclusively
// (O_EXCL), then writes {"participantId": ..., "pid": ..., "timestamp":
// ...} into it, reads or rewrites the state document (in place, not
// atomically), and deletes the file. It waits while the file exists, and
// takes a file older than 2s for abandoned when its content names no
// participant with live frames in the state document.
//
// This store honours that lock; it never deletes a Dart process's lock
// file:
//
//   - Every change of an operation (lockOp) waits, after the store's own
//     lock, until no Dart lock file is there, polling with a backoff
//     while its context lasts; then it fails with a *DartLockError.
//   - A change that reads a Dart state document to give it a journal
//     (adoptAndChange), or that archives an operation (moving its state
//     document away), holds the Dart lock itself: it creates the file
//     exclusively, with the Dart content and a "writer" member that
//     marks it as this store's, and deletes it when done. So a Dart
//     process never rewrites a document while it is adopted, and never
//     writes one back after it was archived (which would bring the
//     operation back). Such a file is only ever made under the store's
//     own lock, so one found by the holder of that lock was left by a
//     process that died: it is deleted.
//   - A reader of a state document without a journal that finds it torn
//     (not JSON, while a Dart lock is there: a Dart process is between
//     truncating and writing it) reads it again until it is whole.
//
// Changes of an operation with a journal do not take the Dart lock: a
// Dart process neither reads nor writes the journal, and the state
// document is replaced atomically (rename), so a Dart reader never sees
// it torn.

// dartLockName is the Dart ledger's lock file of operation id.
func dartLockName(id string) string { return id + ".operation.json.lock" }

// dartLockWriter marks a Dart lock file made by this store.
const dartLockWriter = "github.com/tomdist/ledger"

// dartLockContent is the content of a Dart lock file.
type dartLockContent struct {
	ParticipantID string `json:"participantId"`
	PID           int    `json:"pid"`
	Timestamp     string `json:"timestamp"`
	Writer        string `json:"writer,omitempty"` // this store's files only
}

// DartLockError reports that a Dart process held the lock file of an
// operation for as long as the caller could wait. It matches
// journal.ErrLocked.
type DartLockError struct {
	Path string // the lock file
	// ParticipantID and PID are what the file says of its holder: the
	// participant id of the Dart LocalLedger (ledger_server for a Dart
	// ledger server) and its process id. Empty and zero when the file is
	// empty (a Dart process between creating and writing it, or one that
	// died in between) or unreadable.
	ParticipantID string
	PID           int
	Timestamp     string    // when the holder took it, as it wrote it
	Since         time.Time // the file's modification time
	Err           error     // why the wait ended: the context's cause
}

func (e *DartLockError) Error() string {
	holder := "an empty or unreadable file (a Dart process between creating and writing it, or one that died then)"
	if e.ParticipantID != "" {
		holder = fmt.Sprintf("Dart participant %s (pid %d) since %s", e.ParticipantID, e.PID, e.Timestamp)
	}
	return fmt.Sprintf("%s is held by %s, unchanged since %s; a Dart process holds it for milliseconds: if none uses the operation any more, delete the file: %v",
		e.Path, holder, e.Since.UTC().Format(time.RFC3339Nano), e.Err)
}

// Unwrap returns why the wait ended.
func (e *DartLockError) Unwrap() error { return e.Err }

// Is reports whether target is journal.ErrLocked.
func (e *DartLockError) Is(target error) bool { return target == journal.ErrLocked }

// Backoff of the wait for a Dart lock: Dart's own polls at 50ms, growing
// by half up to 500ms; these start sooner, as a Dart lock is held for
// milliseconds.
const (
	dartPollFirst = 5 * time.Millisecond
	dartPollMax   = 200 * time.Millisecond
)

// waitDartLock waits until operation id has no Dart lock file, polling
// with a backoff, and returns a *DartLockError if ctx ends first. With
// locked, the caller holds the store's lock of id, so a lock file of this
// store's is one a dead process left: it goes.
func (d *Dir) waitDartLock(ctx context.Context, id string, locked bool) error {
	name := dartLockName(id)
	for wait := dartPollFirst; ; wait = min(wait*3/2, dartPollMax) {
		fi, err := d.root.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if locked && d.removeOwnDartLock(name, fi) {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return d.dartLockError(ctx, name, fi)
		}
	}
}

// holdDartLock takes the Dart lock of operation id as a Dart process
// does (see waitDartLock for the wait), and returns its release. The
// caller holds the store's lock of id.
func (d *Dir) holdDartLock(ctx context.Context, id string) (release func(), err error) {
	name := dartLockName(id)
	host, _ := os.Hostname()
	content, _ := json.Marshal(dartLockContent{
		ParticipantID: "go-ledger@" + host, PID: os.Getpid(),
		Timestamp: time.Now().UTC().Format(time.RFC3339Nano), Writer: dartLockWriter,
	})
	for {
		if err := d.waitDartLock(ctx, id, true); err != nil {
			return nil, err
		}
		f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue // a Dart process took it first
		}
		if err != nil {
			return nil, err
		}
		_, err = f.Write(content)
		fi, serr := f.Stat()
		if cerr := f.Close(); err == nil {
			err = errors.Join(serr, cerr)
		}
		if err != nil {
			d.root.Remove(name)
			return nil, err
		}
		return func() {
			// A Dart process takes a lock older than 2s for abandoned:
			// delete the file only if it is still ours.
			if now, err := d.root.Lstat(name); err == nil && os.SameFile(fi, now) {
				d.root.Remove(name)
			}
		}, nil
	}
}

// removeOwnDartLock deletes the Dart lock file name (with info fi) if
// this store made it, and reports whether it did. The caller holds the
// store's lock, under which alone such a file is made: its maker died.
func (d *Dir) removeOwnDartLock(name string, fi fs.FileInfo) bool {
	if !fi.Mode().IsRegular() {
		return false
	}
	b, err := d.readFile(name)
	var c dartLockContent
	if err != nil || json.Unmarshal(b, &c) != nil || c.Writer != dartLockWriter {
		return false
	}
	if now, err := d.root.Lstat(name); err != nil || !os.SameFile(fi, now) {
		return false
	}
	return d.root.Remove(name) == nil
}

// dartLockError describes the Dart lock file name, with info fi, that
// the caller waited for in vain.
func (d *Dir) dartLockError(ctx context.Context, name string, fi fs.FileInfo) error {
	e := &DartLockError{Path: d.pathOf(name), Since: fi.ModTime(), Err: context.Cause(ctx)}
	if b, err := d.readFile(name); err == nil {
		var c dartLockContent
		if json.Unmarshal(b, &c) == nil {
			e.ParticipantID, e.PID, e.Timestamp = c.ParticipantID, c.PID, c.Timestamp
		}
	}
	return e
}

// readStateDoc reads the state document name of operation id, which has
// no journal. A document that is not JSON while a Dart lock is there is
// being rewritten by a Dart process (which truncates it, then writes it):
// it is read again, after a pause that grows, until it is whole or ctx
// ends (a *DartLockError). One that is not JSON, twice, with no Dart lock
// there, is returned as it is, for the caller to report.
func (d *Dir) readStateDoc(ctx context.Context, id, name string) ([]byte, error) {
	quiet := 0 // reads in a row of a torn document without a Dart lock
	for wait := dartPollFirst; ; wait = min(wait*3/2, dartPollMax) {
		doc, err := d.readFile(name)
		if err != nil || json.Valid(doc) || name != stateName(id) {
			return doc, err
		}
		fi, err := d.root.Lstat(dartLockName(id))
		if err != nil {
			if quiet++; quiet == 2 {
				return doc, nil
			}
			continue // a Dart write may have ended meanwhile
		}
		quiet = 0
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, d.dartLockError(ctx, dartLockName(id), fi)
		}
	}
}
