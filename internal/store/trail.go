package store

import (
	"errors"
	"io/fs"
	"slices"
	"time"
)

// snapshot links the state just written into the trail when one is due and
// keeps at most MaxTrail snapshots. Snapshots are hard links: state files
// are never changed after they are written. A snapshot is due when neither
// this process nor any other took one within TrailInterval: the trail
// directory's modification time is the time of the last snapshot of any
// process. The caller holds the lock. A trail directory that is a
// symbolic link (or no directory) gets no snapshot and loses no file.
func (s *Store) snapshot(e *entry, id string, d *Data) {
	if s.opts.MaxTrail <= 0 || time.Since(e.trail) < s.opts.TrailInterval {
		return
	}
	r, err := s.openRoot()
	if err != nil {
		return
	}
	defer r.Close()
	dir := trailName(id)
	if fi, err := r.Lstat(dir); err == nil {
		if !fi.IsDir() { // Lstat: a link is no directory
			return
		}
		if age := time.Since(fi.ModTime()); age >= 0 && age < s.opts.TrailInterval {
			e.trail = fi.ModTime()
			return
		}
	} else if err := r.Mkdir(dir, 0o755); err != nil {
		return
	}
	e.trail = time.Now()
	name := snapshotName(time.Since(d.StartTime.Time).Milliseconds(), id)
	if err := r.Link(stateName(id), dir+"/"+name); err != nil {
		return
	}
	names, err := s.names(r, dir)
	if err != nil || len(names) <= s.opts.MaxTrail {
		return
	}
	slices.Sort(names)
	for _, n := range names[:len(names)-s.opts.MaxTrail] {
		r.Remove(dir + "/" + n) // a link goes, not what it points to
	}
}

// TrailLen returns how many trail snapshots id has (live or archived). A
// trail directory that is a symbolic link counts none.
func (s *Store) TrailLen(id string) int {
	r, err := s.openRoot()
	if err != nil {
		return 0
	}
	defer r.Close()
	names, err := s.names(r, trailName(id))
	if errors.Is(err, fs.ErrNotExist) {
		names, _ = s.names(r, backupDirName(id)+"/"+archivedTrail)
	}
	return len(names)
}
