package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
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
//   - A free lock is taken at once (LOCK_NB on a plain descriptor). A
//     taken one is waited for with a blocking flock(2) (gofrs/flock's
//     Lock), so that waiters of all processes queue in the kernel and the
//     lock passes to one of them the moment it is released, never idle
//     between polls. A blocking flock cannot be interrupted; a waiter
//     whose context ends returns ErrLockTimeout at once and leaves its
//     wait to a goroutine that, when granted, gives the lock straight
//     back and then releases sem. That goroutine holds sem meanwhile, so
//     an operation has at most one such wait per Store.
//
// A Store keeps no descriptor per operation: a lock file is open while
// locked or waited for, and at most maxKeptLocks of them stay open
// between changes (kept.go). A lock file is removed, while still locked,
// when the operation turns out to have no live state (archived, never
// created, or a lock file left by an older version), so that lock files
// follow the live operations. A locker that was granted the flock of a
// lock file that was unlinked meanwhile holds a lock nobody else looks
// at: it compares the locked descriptor with the path (device and inode,
// fstat against lstat) and starts again; the operation is then not
// found, and its lock file is not created again. Every process sharing a
// directory must use this protocol: a process that keeps lock files
// forever and never checks them would lock the unlinked file.
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
	h, ok := s.reuseKept(e, s.lockPath(id))
	var err error
	if !ok {
		h, err = s.flock(ctx, e, id, create)
	}
	switch {
	case errors.Is(err, errAbandoned):
		return nil, nil, s.lockTimeout(ctx, id)
	case err != nil:
		<-e.sem
		s.release(e, false)
		return nil, nil, err
	}
	return e, func() { s.unlock(e, id, h) }, nil
}

func (s *Store) lockTimeout(ctx context.Context, id string) error {
	return fmt.Errorf("%w %s: %w", ErrLockTimeout, s.lockPath(id), context.Cause(ctx))
}

// unlock releases the locks taken by lock. The lock file of an operation
// found gone is removed first, while still locked.
func (s *Store) unlock(e *entry, id string, h held) {
	gone := e.gone
	if gone {
		unix.Unlink(s.lockPath(id))
		e.gone = false
		s.forget(e)
	}
	s.unflock(e, h, gone)
	<-e.sem
	s.release(e, gone)
}

// flock takes the flock of the lock file of id, which is the file at its
// path when granted. The caller holds e.sem.
func (s *Store) flock(ctx context.Context, e *entry, id string, create bool) (held, error) {
	path := s.lockPath(id)
	for {
		h, err := s.flockFile(ctx, e, id, create)
		if err != nil {
			return held{}, err
		}
		same, err := lockedAt(&h, path)
		if same {
			return h, nil
		}
		h.release() // a file unlinked while we waited: start again
		if err != nil {
			return held{}, fmt.Errorf("ledger: lock %s: %w", path, err)
		}
		if ctx.Err() != nil {
			return held{}, s.lockTimeout(ctx, id)
		}
	}
}

// flockFile opens the lock file of id and takes its flock.
func (s *Store) flockFile(ctx context.Context, e *entry, id string, create bool) (held, error) {
	path := s.lockPath(id)
	h, err := s.takeFlock(ctx, e, path, create)
	if errors.Is(err, fs.ErrNotExist) && !create {
		// A state without a lock file was written by another
		// implementation; no state at all is an unknown operation.
		if _, serr := os.Lstat(s.StatePath(id)); errors.Is(serr, fs.ErrNotExist) {
			return held{}, notFound(id)
		}
		h, err = s.takeFlock(ctx, e, path, true)
	}
	var ce *CorruptError
	switch {
	case err == nil, errors.Is(err, errAbandoned), errors.As(err, &ce):
		return h, err
	case errors.Is(err, unix.ELOOP):
		return held{}, &CorruptError{Path: path, Err: errSymlink}
	}
	return held{}, fmt.Errorf("ledger: lock %s: %w", path, err)
}

// takeFlock takes the flock of the lock file at path: at once if it is
// free, or else after a wait in the kernel's queue (see wait).
func (s *Store) takeFlock(ctx context.Context, e *entry, path string, create bool) (held, error) {
	if h, ok, err := tryFlock(path, create); ok || err != nil {
		return h, err
	}
	fl := flock.New(path, flock.SetFlag(lockFlag(create)), flock.SetPermissions(0o644))
	return held{fd: -1, fl: fl}, s.wait(ctx, e, fl)
}

// held is the flock of a lock file, held by this process. A lock taken
// at once is a plain descriptor, as the hot path uses them (sysfile.go
// says why), which may be kept open for the next change (kept.go); one
// taken after a wait in the kernel is a gofrs Flock, closed when
// released. A lock file is never opened through a link.
type held struct {
	fd       int          // the descriptor of a lock taken at once; -1 otherwise
	dev, ino uint64       // the locked file, once lockedAt compared it
	kept     bool         // fd is the entry's kept lock file (kept.go)
	fl       *flock.Flock // a lock taken after a wait; nil otherwise
}

// tryFlock opens the lock file at path and takes its flock if it is free;
// if another holds it, ok is false and err nil.
func tryFlock(path string, create bool) (h held, ok bool, err error) {
	fd, err := sysOpen("open", path, lockFlag(create), 0o644)
	if err != nil {
		return held{}, false, err
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if err == unix.EWOULDBLOCK {
			return held{}, false, nil
		}
		return held{}, false, &fs.PathError{Op: "flock", Path: path, Err: err}
	}
	return held{fd: fd}, true, nil
}

// release gives the flock back and closes the lock file.
func (h held) release() {
	if h.fl != nil {
		h.fl.Unlock()
		return
	}
	unix.Close(h.fd) // the only descriptor of this open file: the flock goes
}

// lockedAt reports whether the file locked by h is the file at path now,
// and sets h.dev and h.ino.
func lockedAt(h *held, path string) (bool, error) {
	if h.fl != nil {
		fi, err := h.fl.Stat() // of the open descriptor
		if err != nil {
			return false, err
		}
		sys := fi.Sys().(*syscall.Stat_t)
		h.dev, h.ino = uint64(sys.Dev), sys.Ino
	} else {
		var st unix.Stat_t
		if err := unix.Fstat(h.fd, &st); err != nil {
			return false, &fs.PathError{Op: "fstat", Path: path, Err: err}
		}
		h.dev, h.ino = uint64(st.Dev), st.Ino
	}
	var now unix.Stat_t
	switch err := unix.Lstat(path, &now); {
	case err == unix.ENOENT:
		return false, nil
	case err != nil:
		return false, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return uint64(now.Dev) == h.dev && now.Ino == h.ino, nil
}

// wait takes the flock of fl, blocking in the kernel. If ctx ends first,
// wait returns errAbandoned and leaves the wait to a goroutine that gives
// the lock back when granted and then releases e.sem and e's ref.
func (s *Store) wait(ctx context.Context, e *entry, fl *flock.Flock) error {
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
