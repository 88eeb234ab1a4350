package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Log appends one line to the log of a live operation. The lock is taken so
// that a line never lands after the operation was archived.
func (s *Store) Log(ctx context.Context, id, level, participant, msg string) error {
	if err := CheckOperationID(id); err != nil {
		return err
	}
	if _, err := os.Stat(s.StatePath(id)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	_, unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(s.StatePath(id)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s.appendLogs(id, []logLine{{level, participant, msg}})
}

// appendLogs writes lines with one O_APPEND write per file, so lines from
// several processes never interleave.
func (s *Store) appendLogs(id string, lines []logLine) error {
	if len(lines) == 0 {
		return nil
	}
	now := time.Now().UTC().Format(timeLayout)
	var info, debug []byte
	var out []string
	for _, l := range lines {
		line := now + " [" + l.level + "] " + l.participant + " " + oneLine(l.msg)
		if l.level == "DEBUG" {
			debug = append(append(debug, line...), '\n')
		} else {
			info = append(append(info, line...), '\n')
		}
		out = append(out, line)
	}
	var errs []error
	if info != nil {
		errs = append(errs, appendFile(s.logPath(id), info))
	}
	if debug != nil {
		errs = append(errs, appendFile(s.debugLogPath(id), debug))
	}
	if cb := s.opts.OnLogLine; cb != nil {
		for _, line := range out {
			cb(id, line)
		}
	}
	return errors.Join(errs...)
}

// oneLine keeps a message on one log line.
func oneLine(msg string) string {
	if !strings.ContainsAny(msg, "\r\n") {
		return msg
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(msg)
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadLog returns the INFO log of id, live or archived.
func (s *Store) ReadLog(id string) ([]byte, error) {
	if err := CheckOperationID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.logPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(s.BackupDir(id), "operation.log"))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return b, err
}

// archive moves the state, logs and trail of id to backup/{id}/ and prunes
// old backups. The caller holds the lock; the lock file stays.
func (s *Store) archive(e *entry, id string) error {
	dst := s.BackupDir(id)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	moves := []struct{ from, to string }{
		{s.logPath(id), "operation.log"},
		{s.debugLogPath(id), "operation.debug.log"},
		{s.trailDir(id), "trail"},
		{s.StatePath(id), "operation.json"}, // last: its absence means archived
	}
	for _, m := range moves {
		err := os.Rename(m.from, filepath.Join(dst, m.to))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	os.RemoveAll(s.liveDir(id))
	if s.opts.Durable {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	e.cache.Store(nil)
	now := time.Now()
	os.Chtimes(dst, now, now) // the backup's age is its archive time
	if cb := s.opts.OnBackupCreated; cb != nil {
		cb(id, dst)
	}
	return s.Prune()
}

// Prune removes the oldest archived operations beyond MaxBackups.
func (s *Store) Prune() error {
	if s.opts.MaxBackups <= 0 {
		return nil
	}
	ids, err := s.ListArchived()
	if err != nil {
		return err
	}
	var errs []error
	for len(ids) > s.opts.MaxBackups {
		errs = append(errs, os.RemoveAll(s.BackupDir(ids[0])))
		ids = ids[1:]
	}
	return errors.Join(errs...)
}

// snapshot links the state just written into the trail when one is due and
// keeps at most MaxTrail snapshots. Snapshots are hard links: state files
// are never changed after they are written. The caller holds the lock.
func (s *Store) snapshot(e *entry, d *Data) {
	if s.opts.MaxTrail <= 0 || time.Since(e.trail) < s.opts.TrailInterval {
		return
	}
	e.trail = time.Now()
	dir := s.trailDir(d.OperationID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	elapsed := time.Since(d.StartTime.Time).Milliseconds()
	name := fmt.Sprintf("%012d_%s.json", max(elapsed, 0), d.OperationID)
	if err := os.Link(s.StatePath(d.OperationID), filepath.Join(dir, name)); err != nil {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) <= s.opts.MaxTrail {
		return
	}
	names := make([]string, len(ents))
	for i, de := range ents {
		names[i] = de.Name()
	}
	slices.Sort(names)
	for _, n := range names[:len(names)-s.opts.MaxTrail] {
		os.Remove(filepath.Join(dir, n))
	}
}

// TrailLen returns how many trail snapshots id has (live or archived).
func (s *Store) TrailLen(id string) int {
	ents, err := os.ReadDir(s.trailDir(id))
	if errors.Is(err, fs.ErrNotExist) {
		ents, _ = os.ReadDir(filepath.Join(s.BackupDir(id), "trail"))
	}
	return len(ents)
}

func (s *Store) liveDir(id string) string { return filepath.Join(s.dir, id+".live") }

func (s *Store) livePath(id, participant string, pid int) string {
	return filepath.Join(s.liveDir(id), fmt.Sprintf("%s.%d.lock", participant, pid))
}

// Liveness is a held liveness lock: proof to other processes on this host
// that the participant process is alive.
type Liveness struct {
	f    *os.File
	path string
}

// HoldLiveness creates and locks the liveness file of a participant
// process. The lock lasts until Release or the death of the process.
func (s *Store) HoldLiveness(id, participant string, pid int) (*Liveness, error) {
	if err := os.MkdirAll(s.liveDir(id), 0o755); err != nil {
		return nil, err
	}
	// Lock a temp file, then rename it into place: an observer never sees
	// the file unlocked while its process lives.
	path := s.livePath(id, participant, pid)
	f, err := os.CreateTemp(s.liveDir(id), ".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &Liveness{f: f, path: path}, nil
}

// Release drops the lock and deletes the file.
func (l *Liveness) Release() {
	os.Remove(l.path)
	l.f.Close()
}

// Dead reports whether the liveness file of a participant process exists and
// is not locked: then the process that locked it is gone. A missing file
// proves nothing (the participant may use a remote backend), so it is not
// dead.
func (s *Store) Dead(id, participant string, pid int) bool {
	f, err := os.Open(s.livePath(id, participant, pid))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return false
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return true
}

// RemoveLiveness deletes the liveness file of a participant found dead.
func (s *Store) RemoveLiveness(id, participant string, pid int) {
	os.Remove(s.livePath(id, participant, pid))
}

// HasLiveness reports whether a participant process has a liveness file
// (held or not).
func (s *Store) HasLiveness(id, participant string, pid int) bool {
	_, err := os.Stat(s.livePath(id, participant, pid))
	return err == nil
}
