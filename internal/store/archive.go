package store

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// archive moves the state, logs and trail of id to backup/{id}/ and prunes
// old backups. The caller holds the lock. A backup/ or backup/{id} that is
// a symbolic link fails the archive with errSymlink: nothing is moved.
func (s *Store) archive(e *entry, id string, n *notes) error {
	r, err := s.openRoot()
	if err != nil {
		return err
	}
	defer r.Close()
	dst := backupDirName(id)
	if err := s.mkdirs(r, dst); err != nil {
		return err
	}
	moves := []struct{ from, to string }{
		{logName(id), archivedLog},
		{debugLogName(id), archivedDebugLog},
		{trailName(id), archivedTrail},
		{stateName(id), archivedState}, // last: its absence means archived
	}
	for _, m := range moves {
		// rename moves a link itself, never what it points to.
		err := r.Rename(m.from, dst+"/"+m.to)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	e.gone = true
	r.RemoveAll(filepath.Base(s.liveDir(id))) // a link goes, not its target
	if s.opts.Durable {
		for _, dir := range []string{dst, backupName, "."} {
			if err := syncDir(s.path(dir)); err != nil {
				return err
			}
		}
	}
	now := time.Now()
	r.Chtimes(dst, now, now) // the backup's age is its archive time
	n.backup = s.path(dst)
	if s.opts.MaxBackups > 0 {
		// Pruning is housekeeping: the operation is archived whatever
		// it meets, and the next archive tries again.
		_, _, _ = s.pruneArchives(r, s.opts.MaxBackups)
	}
	return nil
}

// Prune removes the oldest archived operations beyond MaxBackups; with
// MaxBackups 0 it keeps all.
func (s *Store) Prune() error {
	if s.opts.MaxBackups <= 0 {
		return nil
	}
	_, _, err := s.PruneArchives(s.opts.MaxBackups)
	return err
}

// PruneArchives removes the oldest archived operations beyond keep (all
// of them when keep is 0, none when it is negative) and returns how many
// it removed and kept. Only
// archives are removed: directories of backup/ whose operation.json names
// them (see ListArchived). A backup/ that is a symbolic link is an error
// (errSymlink) and nothing is removed.
func (s *Store) PruneArchives(keep int) (removed, kept int, err error) {
	r, err := s.openRoot()
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	return s.pruneArchives(r, keep)
}

func (s *Store) pruneArchives(r *os.Root, keep int) (removed, kept int, err error) {
	ids, err := s.archives(r)
	if err != nil || keep < 0 {
		return 0, len(ids), err
	}
	var errs []error
	for ; len(ids) > keep; ids = ids[1:] {
		// RemoveAll removes a link it meets, never what the link
		// points to, and the root keeps it inside the directory.
		if err := r.RemoveAll(backupDirName(ids[0])); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, len(ids), errors.Join(errs...)
}

// ListArchived returns the ids of archived operations, oldest first. An
// archive is a directory backup/{id} (not a link) holding an
// operation.json (not a link) whose operationId is id; anything else in
// backup/ is not the store's and is left alone.
func (s *Store) ListArchived() ([]string, error) {
	r, err := s.openRoot()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return s.archives(r)
}

func (s *Store) archives(r *os.Root) ([]string, error) {
	if err := s.realDir(r, backupName); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	f, err := r.Open(backupName)
	if err != nil {
		return nil, err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	type backup struct {
		id  string
		mod time.Time
	}
	var bs []backup
	for _, de := range ents {
		// The type comes from the directory, as Lstat gives it: a link
		// is not a directory.
		if !de.IsDir() || CheckOperationID(de.Name()) != nil || !s.isArchive(r, de.Name()) {
			continue
		}
		if fi, err := de.Info(); err == nil {
			bs = append(bs, backup{de.Name(), fi.ModTime()})
		}
	}
	slices.SortFunc(bs, func(a, b backup) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.id
	}
	return ids, nil
}

// isArchive reports whether backup/{id} holds the archived state of id.
func (s *Store) isArchive(r *os.Root, id string) bool {
	raw, err := s.readRegular(r, backupDirName(id)+"/"+archivedState)
	if err != nil {
		return false
	}
	var head struct {
		OperationID string `json:"operationId"`
	}
	return json.Unmarshal(raw, &head) == nil && head.OperationID == id
}

// readArchived reads the file name of the archive of id.
func (s *Store) readArchived(id, name string) ([]byte, error) {
	r, err := s.openRoot()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return s.readRegular(r, backupDirName(id)+"/"+name)
}
