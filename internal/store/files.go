package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	var n notes
	err := s.log(ctx, id, logLine{level, participant, msg}, &n)
	s.notify(id, &n)
	return err
}

func (s *Store) log(ctx context.Context, id string, line logLine, n *notes) error {
	e, unlock, err := s.lock(ctx, id, false)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(s.StatePath(id)); errors.Is(err, fs.ErrNotExist) {
		e.gone = true
		return notFound(id)
	}
	return s.appendLogs(id, []logLine{line}, n)
}

// appendLogs writes lines with one O_APPEND write per file, so lines from
// several processes never interleave, and adds them to n. The caller holds
// the lock.
func (s *Store) appendLogs(id string, lines []logLine, n *notes) error {
	if len(lines) == 0 {
		return nil
	}
	now := time.Now().UTC().Format(timeLayout)
	var info, debug []byte
	for _, l := range lines {
		line := now + " [" + l.level + "] " + l.participant + " " + oneLine(l.msg)
		if l.level == "DEBUG" {
			debug = append(append(debug, line...), '\n')
		} else {
			info = append(append(info, line...), '\n')
		}
		n.lines = append(n.lines, line)
	}
	var errs []error
	if info != nil {
		errs = append(errs, sysAppend(s.logPath(id), info))
	}
	if debug != nil {
		errs = append(errs, sysAppend(s.debugLogPath(id), debug))
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

// ReadLog returns the log of id (INFO and above), live or archived.
func (s *Store) ReadLog(id string) ([]byte, error) {
	return s.readLog(id, logName(id), archivedLog)
}

// ReadDebugLog returns the DEBUG log of id, live or archived.
func (s *Store) ReadDebugLog(id string) ([]byte, error) {
	return s.readLog(id, debugLogName(id), archivedDebugLog)
}

// readLog reads the log named live in the directory, or else the file
// named archived in the archive of id, never through a symbolic link.
func (s *Store) readLog(id, live, archived string) ([]byte, error) {
	if err := CheckOperationID(id); err != nil {
		return nil, err
	}
	b, err := sysReadFile(s.path(live), func(size int) []byte { return make([]byte, size) })
	if errors.Is(err, fs.ErrNotExist) {
		b, err = s.readArchived(id, archived)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return b, err
}

func (s *Store) liveDir(id string) string { return filepath.Join(s.dir, id+".live") }

func (s *Store) livePath(id, participant string, pid int) string {
	return filepath.Join(s.liveDir(id), fmt.Sprintf("%s.%d.lock", participant, pid))
}

func checkLiveness(id, participant string) error {
	if err := CheckOperationID(id); err != nil {
		return err
	}
	return CheckParticipantID(participant)
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
	if err := checkLiveness(id, participant); err != nil {
		return nil, err
	}
	// Lock a temp file, then rename it into place: an observer never sees
	// the file unlocked while its process lives.
	path := s.livePath(id, participant, pid)
	f, err := s.createLiveTemp(id)
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

// createLiveTemp creates a temp file in the liveness directory of id,
// creating the directory. The last Release removes the directory, so it
// may vanish between the two: then both are tried again.
func (s *Store) createLiveTemp(id string) (f *os.File, err error) {
	for range 10 {
		if err = os.MkdirAll(s.liveDir(id), 0o755); err != nil {
			return nil, err
		}
		f, err = os.CreateTemp(s.liveDir(id), ".tmp-*")
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
	return nil, err
}

// Release drops the lock and deletes the file, and the liveness directory
// once it is empty, so that nothing is left of a participant that is gone.
func (l *Liveness) Release() {
	os.Remove(l.path)
	l.f.Close()
	os.Remove(filepath.Dir(l.path)) // fails, as it should, while others live
}

// Dead reports whether the liveness file of a participant process exists and
// is not locked: then the process that locked it is gone. A missing file
// proves nothing (the participant may use a remote backend), so it is not
// dead.
func (s *Store) Dead(id, participant string, pid int) bool {
	if checkLiveness(id, participant) != nil {
		return false
	}
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
	if checkLiveness(id, participant) != nil {
		return // ids read from a state file: never follow a bad one
	}
	os.Remove(s.livePath(id, participant, pid))
}

// HasLiveness reports whether a participant process has a liveness file
// (held or not).
func (s *Store) HasLiveness(id, participant string, pid int) bool {
	_, err := os.Stat(s.livePath(id, participant, pid))
	return err == nil
}
