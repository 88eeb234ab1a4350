package store

import "golang.org/x/sys/unix"

// Kept lock files. Opening the lock file and closing it again costs a
// path lookup and two system calls on every change; the operations a
// process is busy with keep theirs open between changes, unlocked, at
// most maxKeptLocks per Store (the least recently used goes first), so
// that descriptors stay bounded however many operations a process
// touches. A kept file is used again only if it still is the file at the
// lock file's path (compared after the flock, as every lock is; see
// lock.go); it is closed when its operation is found gone, its entry is
// dropped, or the Store is closed.

// maxKeptLocks is how many lock files a Store keeps open between changes.
const maxKeptLocks = 16

// reuseKept takes the flock of the lock file e keeps, if it is free and
// still the file at path; a kept file that is not is closed. The caller
// holds e.sem.
func (s *Store) reuseKept(e *entry, path string) (held, bool) {
	if e.keptFD < 0 {
		return held{}, false
	}
	h := held{fd: e.keptFD, dev: e.keptDev, ino: e.keptIno, kept: true}
	if unix.Flock(h.fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return held{}, false // taken: wait on a descriptor of its own
	}
	var now unix.Stat_t
	if unix.Lstat(path, &now) == nil && uint64(now.Dev) == h.dev && now.Ino == h.ino {
		return h, true
	}
	unix.Flock(h.fd, unix.LOCK_UN)
	s.dropKept(e) // unlinked or replaced since
	return held{}, false
}

// unflock gives the flock of h back. A descriptor taken at once is kept
// for the next change of the operation if there is room, unless the
// operation is gone. The caller holds e.sem.
func (s *Store) unflock(e *entry, h held, gone bool) {
	switch {
	case h.fl != nil:
		h.fl.Unlock()
	case h.kept && !gone:
		unix.Flock(h.fd, unix.LOCK_UN)
		return
	case h.kept:
		// closed below
	case gone || !s.keep(e, h):
		unix.Close(h.fd) // the only descriptor of this open file: the flock goes
	default:
		unix.Flock(h.fd, unix.LOCK_UN)
	}
	if gone {
		s.dropKept(e)
	}
}

// keep makes h's descriptor the kept lock file of e, evicting the least
// recently used kept file of an entry nobody uses if there is no room.
func (s *Store) keep(e *entry, h held) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || e.keptFD >= 0 || s.kept.Len() >= maxKeptLocks && !s.evictKept() {
		return false
	}
	e.keptFD, e.keptDev, e.keptIno = h.fd, h.dev, h.ino
	e.keptElem = s.kept.PushFront(e)
	return true
}

// evictKept closes the least recently used kept lock file of an entry no
// goroutine uses, and reports whether there was one.
func (s *Store) evictKept() bool {
	for el := s.kept.Back(); el != nil; el = el.Prev() {
		if e := el.Value.(*entry); e.refs == 0 {
			s.closeKeptLocked(e)
			return true
		}
	}
	return false
}

// dropKept closes the kept lock file of e, if any. The caller holds e.sem.
func (s *Store) dropKept(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.keptElem != nil {
		s.closeKeptLocked(e)
	}
}

// closeKeptLocked closes the kept lock file of e. The caller holds s.mu,
// and either e.sem or e has no refs: nobody else uses the descriptor.
func (s *Store) closeKeptLocked(e *entry) {
	unix.Close(e.keptFD)
	e.keptFD = -1
	s.kept.Remove(e.keptElem)
	e.keptElem = nil
}

// closeKept closes every kept lock file of an entry nobody uses and makes
// the Store keep no more: Close calls it.
func (s *Store) closeKept() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for el := s.kept.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*entry); e.refs == 0 {
			s.closeKeptLocked(e)
		}
		el = next
	}
}
