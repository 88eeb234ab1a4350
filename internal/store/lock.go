package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// The lock of an operation is an exclusive flock of its lock file,
// {id}.operation.json.lock, taken in two steps:
//
//   - In a Store, one goroutine at a time per operation touches the flock:
//     it holds the entry's sem from before it opens the lock file until
//     the flock is given back. Other goroutines of the process wait for
//     sem, honouring their contexts.
//   - The flock is a blocking flock(2), so that waiters of all processes
//     queue in the kernel and the lock passes to one of them the moment
//     it is released. A blocking flock cannot be interrupted; a waiter
//     whose context ends returns ErrLockTimeout at once and leaves its
//     wait to a goroutine that, when granted, gives the lock straight
//     back and then releases sem. That goroutine holds sem meanwhile, so
//     an operation has at most one such wait per Store.
//
// The lock file is open only while locked (or waited for): a Store keeps
// no descriptor per operation. It is removed, while still locked, when
// the operation turns out to have no live state (archived, never created,
// or a lock file left by an older version), so that lock files follow the
// live operations. A locker that was granted the flock of a lock file
// that was unlinked meanwhile holds a lock nobody else looks at: it
// compares the locked descriptor with the path (os.SameFile on Lstat) and
// starts again; the operation is then not found, and its lock file is not
// created again. Every process sharing a directory must use this
// protocol: a process that keeps lock files forever and never checks
// them would lock the unlinked file.
//
// Store.Close waits for such abandoned waits for at most closeGrace. One
// still waiting then (its lock is held by a process that does not let go)
// ends by itself when the lock is released: it gives the lock back,
// closes the lock file and exits. Tests that abandon waits let the holder
// go before they end, so that no goroutine outlives them.

// closeGrace is how long Close waits for lock waits of the Store.
const closeGrace = time.Second

// errAbandoned is returned by wait when the caller's context ended and the
// wait was left to a goroutine, which now owns sem and the entry's ref.
var errAbandoned = errors.New("lock wait abandoned")

// lock takes the in-process lock and the file lock of id, waiting no longer
// than ctx allows. Unless create is set, an operation without a lock file
// and without a state file is ErrNotFound, and no file is created. The
// returned function releases both.
func (s *Store) lock(ctx context.Context, id string, create bool) (*entry, func(), error) {
	e := s.acquire(id)
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		s.release(e, false)
		return nil, nil, s.lockTimeout(ctx, id)
	}
	fl, err := s.flock(ctx, e, id, create)
	switch {
	case errors.Is(err, errAbandoned):
		return nil, nil, s.lockTimeout(ctx, id)
	case err != nil:
		<-e.sem
		s.release(e, false)
		return nil, nil, err
	}
	return e, func() { s.unlock(e, id, fl) }, nil
}

func (s *Store) lockTimeout(ctx context.Context, id string) error {
	return fmt.Errorf("%w %s: %w", ErrLockTimeout, s.lockPath(id), context.Cause(ctx))
}

// unlock releases the locks taken by lock. The lock file of an operation
// found gone is removed first, while still locked.
func (s *Store) unlock(e *entry, id string, fl *flock.Flock) {
	gone := e.gone
	if gone {
		unix.Unlink(s.lockPath(id))
		e.gone = false
		s.forget(e)
	}
	fl.Unlock() // releases the flock and closes the file
	<-e.sem
	s.release(e, gone)
}

// flock takes the flock of the lock file of id, which is the file at its
// path when granted. The caller holds e.sem.
func (s *Store) flock(ctx context.Context, e *entry, id string, create bool) (*flock.Flock, error) {
	path := s.lockPath(id)
	for {
		fl, err := s.flockFile(ctx, e, id, create)
		if err != nil {
			return nil, err
		}
		same, err := lockedAt(fl, path)
		if same {
			return fl, nil
		}
		fl.Unlock() // a file unlinked while we waited: start again
		if err != nil {
			return nil, fmt.Errorf("ledger: lock %s: %w", path, err)
		}
		if ctx.Err() != nil {
			return nil, s.lockTimeout(ctx, id)
		}
	}
}

// flockFile opens the lock file of id and takes its flock.
func (s *Store) flockFile(ctx context.Context, e *entry, id string, create bool) (*flock.Flock, error) {
	path := s.lockPath(id)
	fl := newFlock(path, create)
	err := s.wait(ctx, e, fl)
	if errors.Is(err, fs.ErrNotExist) && !create {
		// A state without a lock file was written by another
		// implementation; no state at all is an unknown operation.
		if _, serr := os.Lstat(s.StatePath(id)); errors.Is(serr, fs.ErrNotExist) {
			return nil, notFound(id)
		}
		fl = newFlock(path, true)
		err = s.wait(ctx, e, fl)
	}
	switch {
	case err == nil, errors.Is(err, errAbandoned):
		return fl, err
	case errors.Is(err, unix.ELOOP):
		return nil, &CorruptError{Path: path, Err: errSymlink}
	}
	return nil, fmt.Errorf("ledger: lock %s: %w", path, err)
}

// newFlock returns the flock of the lock file at path, which is opened
// only to lock it and closed when unlocked, never through a link.
func newFlock(path string, create bool) *flock.Flock {
	return flock.New(path, flock.SetFlag(lockFlag(create)), flock.SetPermissions(0o644))
}

// lockedAt reports whether the locked file of fl is the file at path now.
func lockedAt(fl *flock.Flock, path string) (bool, error) {
	held, err := fl.Stat() // of the open descriptor
	if err != nil {
		return false, err
	}
	now, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, now), nil
}

// wait takes the flock of fl, blocking in the kernel. If ctx ends first,
// wait returns errAbandoned and leaves the wait to a goroutine that gives
// the lock back when granted and then releases e.sem and e's ref.
func (s *Store) wait(ctx context.Context, e *entry, fl *flock.Flock) error {
	if ok, err := fl.TryLock(); ok || err != nil {
		return err
	}
	if ctx.Done() == nil {
		return fl.Lock()
	}
	granted, abandon := make(chan error), make(chan struct{})
	go func() {
		err := fl.Lock()
		select {
		case granted <- err:
		case <-abandon:
			if err == nil {
				fl.Unlock()
			}
			<-e.sem
			s.release(e, false)
		}
	}()
	select {
	case err := <-granted:
		return err
	case <-ctx.Done():
		close(abandon)
		return errAbandoned
	}
}

// activity counts goroutines that hold or wait for a lock of a Store, so
// that Close can wait for them.
type activity struct {
	mu   sync.Mutex    // guards n, idle
	n    int           // goroutines counted
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

func (a *activity) add() {
	a.mu.Lock()
	if a.n == 0 {
		a.idle = make(chan struct{})
	}
	a.n++
	a.mu.Unlock()
}

func (a *activity) done() {
	a.mu.Lock()
	a.n--
	if a.n == 0 {
		close(a.idle)
		a.idle = nil
	}
	a.mu.Unlock()
}

// wait waits until no goroutine is counted, or for at most d.
func (a *activity) wait(d time.Duration) {
	a.mu.Lock()
	idle := a.idle
	a.mu.Unlock()
	if idle == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}
