package dirstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/tomdist/ledger/journal"
)

// lockOp takes the lock of operation id: the in-process token of e, then
// an exclusive flock of {id}.operation.lock, then waits until no Dart
// process holds its lock of the operation (see dartlock.go). Waiters queue in the kernel
// (a blocking flock), so the lock passes from writer to writer without
// idle gaps; a waiter whose ctx ends returns ErrLocked at once while its
// place in the queue is kept by a goroutine that gives the lock back as
// soon as it gets it.
//
// The lock file of an archived operation is deleted by the archiver while
// it holds the lock, so a waiter may get the lock of a file that is gone:
// it then looks again. Without create, a missing lock file means the
// operation is not live, and no lock file is created.
func (d *Dir) lockOp(ctx context.Context, id string, e *entry, create bool) (unlock func(), err error) {
	var since time.Time // when a wait for the lock began; zero while it was free
	select {
	case e.sem <- struct{}{}:
	default:
		since = time.Now()
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, lockTimeout(d.lockPath(id), ctx)
		}
	}
	for {
		fl := flock.New(d.lockPath(id), flock.SetFlag(lockFlags(create)), flock.SetPermissions(0o644))
		if err := waitLock(ctx, fl, func() { <-e.sem }, &since); err != nil {
			if errors.Is(err, errAbandoned) {
				return nil, lockTimeout(d.lockPath(id), ctx)
			}
			if errors.Is(err, fs.ErrNotExist) && !create && d.lockable(id) {
				// A live operation whose lock file is not there yet
				// (written by the Dart ledger, or archived lock files
				// removed and then ...): make it.
				create = true
				continue
			}
			<-e.sem
			if errors.Is(err, fs.ErrNotExist) {
				return nil, notFound(id)
			}
			return nil, fmt.Errorf("dirstore: lock %s: %w", d.lockPath(id), err)
		}
		held, err := fl.Stat()
		if err == nil {
			var now fs.FileInfo
			if now, err = d.root.Lstat(lockName(id)); err == nil && os.SameFile(held, now) {
				// A Dart process may hold its own lock: wait for it.
				if err := d.waitDartLock(ctx, id, true); err != nil {
					fl.Unlock()
					<-e.sem
					return nil, err
				}
				if !since.IsZero() && d.opts.OnLockWait != nil {
					d.opts.OnLockWait(time.Since(since))
				}
				return func() { fl.Unlock(); <-e.sem }, nil
			}
		}
		fl.Unlock()
		if !create && errors.Is(err, fs.ErrNotExist) {
			<-e.sem
			return nil, notFound(id)
		}
		if ctx.Err() != nil {
			<-e.sem
			return nil, lockTimeout(d.lockPath(id), ctx)
		}
		// The file was replaced under us: lock the new one.
	}
}

func (d *Dir) lockPath(id string) string { return filepath.Join(d.path, lockName(id)) }

var errAbandoned = errors.New("lock wait abandoned")

// waitLock takes fl, waiting in the kernel's queue. If ctx ends first it
// returns errAbandoned at once; the wait goes on in a goroutine that
// unlocks fl as soon as it gets it and then calls giveBack. A wait sets
// *since to when it began, unless it is set.
func waitLock(ctx context.Context, fl *flock.Flock, giveBack func(), since *time.Time) error {
	if ok, err := fl.TryLock(); ok || err != nil {
		return err
	}
	if since.IsZero() {
		*since = time.Now()
	}
	done := make(chan error, 1)
	go func() { done <- fl.Lock() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		go func() {
			if err := <-done; err == nil {
				fl.Unlock()
			}
			giveBack()
		}()
		return errAbandoned
	}
}

func lockTimeout(path string, ctx context.Context) error {
	return fmt.Errorf("%w: %s: %w", journal.ErrLocked, path, context.Cause(ctx))
}

// lockable reports whether an operation without a lock file may have one
// made: it has a journal, or a state document to adopt.
func (d *Dir) lockable(id string) bool {
	if _, err := d.root.Lstat(journalName(id)); err == nil {
		return true
	}
	return d.adoptable(id)
}
