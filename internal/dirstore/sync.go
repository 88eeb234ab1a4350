package dirstore

import (
	"os"
	"sync"
)

// syncer makes appends durable, sharing one sync among the writers of a
// process that wait for it: a sync that starts after a writer's append
// covers it, so a writer that finds a sync running waits for it and then
// needs its own only if that one started before its append.
type syncer struct {
	mu    sync.Mutex // guards files
	files map[string]*fileSync
}

// fileSync is the sync state of one journal.
type fileSync struct {
	mu      sync.Mutex // guards the fields below
	cond    *sync.Cond
	writes  uint64 // appends registered
	covered uint64 // appends covered by the last finished sync
	running bool
	users   int
}

// sync makes the appends of this process to the journal f of id durable.
// The caller appended and then calls sync.
func (s *syncer) sync(id string, f *os.File) error {
	fs := s.acquire(id)
	defer s.release(id, fs)
	fs.mu.Lock()
	fs.writes++
	mine := fs.writes
	for fs.running {
		fs.cond.Wait()
	}
	if fs.covered >= mine {
		fs.mu.Unlock()
		return nil
	}
	fs.running = true
	upto := fs.writes
	fs.mu.Unlock()
	err := datasync(f)
	fs.mu.Lock()
	fs.running = false
	if err == nil {
		fs.covered = max(fs.covered, upto)
	}
	fs.cond.Broadcast()
	fs.mu.Unlock()
	return err
}

func (s *syncer) acquire(id string) *fileSync {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files == nil {
		s.files = make(map[string]*fileSync)
	}
	fs := s.files[id]
	if fs == nil {
		fs = &fileSync{}
		fs.cond = sync.NewCond(&fs.mu)
		s.files[id] = fs
	}
	fs.users++
	return fs
}

func (s *syncer) release(id string, fs *fileSync) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs.users--
	if fs.users == 0 {
		delete(s.files, id)
	}
}
