package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
// that the participant process is alive. It is safe for concurrent use.
type Liveness struct {
	s           *Store
	id          string
	participant string
	pid         int
	path        string

	mu sync.Mutex // guards f and the temp registry file
	f  *os.File   // nil once released
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
	return &Liveness{s: s, id: id, participant: participant, pid: pid, path: path, f: f}, nil
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

// Release drops the lock and deletes the file and the temp registry, and
// the liveness directory once it is empty, so that nothing is left of a
// participant that is gone. Later calls do nothing.
func (l *Liveness) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	os.Remove(l.s.tempsPath(l.id, l.participant, l.pid))
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
	os.Remove(filepath.Dir(l.path)) // fails, as it should, while others live
}

// Touch sets the modification time of the liveness file to now. It is a
// heartbeat that needs no lock of the operation: observers on this host
// take a change of the time as a beat (see ProbeLiveness), so a process
// whose ledger heartbeats wait for a busy lock is still seen beating.
// After Release it does nothing.
func (l *Liveness) Touch() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	now := unix.NsecToTimeval(time.Now().UnixNano())
	return unix.Futimes(int(l.f.Fd()), []unix.Timeval{now, now})
}

// LiveProbe is what the liveness file of a participant process shows.
type LiveProbe struct {
	Exists bool      // there is a liveness file (a regular file, not a link)
	Dead   bool      // it exists and is not locked: its process is gone
	Beat   time.Time // its modification time: the process's last Touch
}

// ProbeLiveness looks at the liveness file of a participant process. A
// missing file proves nothing (the participant may use a remote backend),
// so it is not dead; nor is anything but a regular file, which no
// participant creates.
func (s *Store) ProbeLiveness(id, participant string, pid int) LiveProbe {
	if checkLiveness(id, participant) != nil {
		return LiveProbe{}
	}
	f, err := os.OpenFile(s.livePath(id, participant, pid), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return LiveProbe{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return LiveProbe{}
	}
	p := LiveProbe{Exists: true, Beat: fi.ModTime()}
	if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		p.Dead = true
	}
	return p
}

// Dead reports whether the liveness file of a participant process exists and
// is not locked: then the process that locked it is gone.
func (s *Store) Dead(id, participant string, pid int) bool {
	return s.ProbeLiveness(id, participant, pid).Dead
}

func (s *Store) tempsPath(id, participant string, pid int) string {
	return filepath.Join(s.liveDir(id), fmt.Sprintf("%s.%d.temps", participant, pid))
}

// TempList is the temp registry of a participant process: the temp
// resources it registered through a LocalLedger, in a file next to its
// liveness lock, {id}.live/{participant}.{pid}.temps. The file names its
// operation, participant, pid and host, so that it cannot be passed off as
// another's, and it can be written by its user only: its owner is the
// user of the process that wrote it.
type TempList struct {
	OperationID   string   `json:"operationId"`
	ParticipantID string   `json:"participantId"`
	PID           int      `json:"pid"`
	Host          string   `json:"host"`
	Paths         []string `json:"paths"`
	// UID is the owner of the file, set by ReadTemps.
	UID int `json:"-"`
}

// maxTempList bounds the temp registry ReadTemps reads.
const maxTempList = 4 << 20

// WriteTemps records paths, on host, as the temp resources of the
// participant process holding l, replacing what it recorded before; no
// paths removes the record. The file is replaced atomically and has mode
// 0600. After Release it does nothing.
func (l *Liveness) WriteTemps(host string, paths []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	path := l.s.tempsPath(l.id, l.participant, l.pid)
	if len(paths) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(TempList{OperationID: l.id, ParticipantID: l.participant, PID: l.pid, Host: host, Paths: paths})
	if err != nil {
		return err
	}
	f, err := l.s.createLiveTemp(l.id) // mode 0600
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && l.s.opts.Durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// ReadTemps reads the temp registry of a participant process (see
// TempList) and returns it with UID set to the owner of the file. It
// refuses, with a *CorruptError, a registry that is not a regular file
// with one link, that others than its owner may write, or that names
// another operation, participant or pid than its place. A registry that
// does not exist is an error matching fs.ErrNotExist.
func (s *Store) ReadTemps(id, participant string, pid int) (*TempList, error) {
	if err := checkLiveness(id, participant); err != nil {
		return nil, err
	}
	path := s.tempsPath(id, participant, pid)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1:
		return nil, &CorruptError{Path: path, Err: errors.New("not a regular file with one link")}
	case st.Mode&0o022 != 0:
		return nil, &CorruptError{Path: path, Err: errors.New("others than its owner may write it")}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTempList+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTempList {
		return nil, &CorruptError{Path: path, Err: errors.New("too large")}
	}
	var list TempList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	if list.OperationID != id || list.ParticipantID != participant || list.PID != pid {
		return nil, &CorruptError{Path: path, Err: errors.New("it names another process")}
	}
	list.UID = int(st.Uid)
	return &list, nil
}

// RemoveTemps deletes the temp registry of a participant process whose
// temp resources have been dealt with.
func (s *Store) RemoveTemps(id, participant string, pid int) {
	if checkLiveness(id, participant) != nil {
		return
	}
	os.Remove(s.tempsPath(id, participant, pid))
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
