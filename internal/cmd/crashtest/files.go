package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/store"
)

// fileChecker parses every file of a ledger directory, as a reader without
// the lock sees it while writers run and get killed. Logs are append-only,
// so each is checked from where the last scan stopped; trail snapshots and
// backups never change, so each is checked once. Only its owner's
// goroutine uses it.
type fileChecker struct {
	dir      string
	logOff   map[string]int64 // verified prefix of each log
	done     map[string]bool  // trail snapshots and backups checked
	problems []string         // what did not parse
	temps    int              // temp files of writers seen by the last scan
}

func newFileChecker(dir string) *fileChecker {
	return &fileChecker{dir: dir, logOff: make(map[string]int64), done: make(map[string]bool)}
}

func (fc *fileChecker) bad(format string, args ...any) {
	fc.problems = append(fc.problems, fmt.Sprintf(format, args...))
}

// scan checks every file of the directory. final says that no writer is
// left: then a log must end with a whole line.
func (fc *fileChecker) scan(final bool) {
	ents, err := os.ReadDir(fc.dir)
	if err != nil {
		fc.bad("read %s: %v", fc.dir, err)
		return
	}
	fc.temps = 0
	for _, de := range ents {
		fc.entry(de, final)
	}
}

func (fc *fileChecker) entry(de fs.DirEntry, final bool) {
	name := de.Name()
	path := filepath.Join(fc.dir, name)
	switch {
	case name == "backup" && de.IsDir():
		fc.backups(path)
	case strings.HasSuffix(name, ".operation.journal"):
		fc.journal(strings.TrimSuffix(name, ".operation.journal"))
	case strings.HasSuffix(name, ".operation.json"):
		fc.state(path, strings.TrimSuffix(name, ".operation.json"))
	case strings.HasSuffix(name, ".operation.lock"):
	case isTemp(name):
		fc.temps++ // a write in progress, or one whose writer was killed
	case name == "~ledger-tmp" && de.IsDir():
		fc.tempDir(path)
	case strings.HasSuffix(name, ".operation.debug.log"):
		fc.log(path, true, final)
	case strings.HasSuffix(name, ".operation.log"):
		fc.log(path, false, final)
	case strings.HasSuffix(name, "_trail") && de.IsDir():
		fc.trail(path, strings.TrimSuffix(name, "_trail"))
	case strings.HasSuffix(name, ".live") && de.IsDir():
	default:
		fc.bad("%s: a file the ledger does not write", path)
	}
}

// readState reads and checks a state file; a missing file is (nil, nil):
// it was archived since the directory was listed.
func readState(path, id string) (*store.Data, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d := new(store.Data)
	if err := json.Unmarshal(b, d); err != nil {
		return nil, err
	}
	return d, checkData(d, id)
}

// checkData checks what every state must hold.
func checkData(d *store.Data, id string) error {
	if d.OperationID != id {
		return fmt.Errorf("operationId %q in the file of %s", d.OperationID, id)
	}
	if !slices.Contains([]string{store.StateRunning, store.StateCleanup, store.StateFailed, store.StateCompleted}, d.OperationState) {
		return fmt.Errorf("operationState %q", d.OperationState)
	}
	if d.StartTime.IsZero() {
		return errors.New("no startTime")
	}
	for _, f := range d.CallFrames {
		if store.CheckCallID(f.CallID) != nil || !slices.Contains([]string{store.FrameActive, store.FrameCrashed, store.FrameCleaningUp, store.FrameCleanedUp}, f.State) {
			return fmt.Errorf("call frame %q in state %q", f.CallID, f.State)
		}
	}
	for _, p := range d.Participants {
		if store.CheckParticipantID(p.ParticipantID) != nil || !slices.Contains([]string{store.ParticipantActive, store.ParticipantLeft, store.ParticipantCrashed}, p.State) {
			return fmt.Errorf("participant %q in state %q", p.ParticipantID, p.State)
		}
	}
	return nil
}

func (fc *fileChecker) state(path, id string) {
	if _, err := readState(path, id); err != nil {
		fc.bad("%s: %v", path, err)
	}
}

// journal checks that the journal of id reads as a valid state, through
// the ledger itself: the journal is the operation's truth.
func (fc *fileChecker) journal(id string) {
	v, err := ledger.OpenViewer(ledger.Options{BasePath: fc.dir})
	if err != nil {
		fc.bad("%s: %v", fc.dir, err)
		return
	}
	defer v.Close()
	b, err := v.Document(context.Background(), id)
	if errors.Is(err, ledger.ErrOperationNotFound) {
		return // archived since the directory was listed
	}
	if err == nil {
		d := new(store.Data)
		if err = json.Unmarshal(b, d); err == nil {
			err = checkData(d, id)
		}
	}
	if err != nil {
		fc.bad("journal of %s: %v", id, err)
	}
}

// logLine is the documented form of a log line:
// "<RFC 3339 UTC, milliseconds> [LEVEL] <participantId> <event or message>".
var logLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) \[(DEBUG|INFO|WARNING|ERROR)\] ([A-Za-z0-9_.-]{1,64}) ([^\r]*)$`)

// log checks the lines appended to a log since the last scan. A line not
// yet ended with a newline is left for the next scan unless final.
func (fc *fileChecker) log(path string, debug, final bool) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return // archived since listed
	}
	if err != nil {
		fc.bad("%s: %v", path, err)
		return
	}
	defer f.Close()
	off := fc.logOff[path]
	fi, err := f.Stat()
	if err == nil && fi.Size() < off {
		fc.bad("%s: shrank from %d to %d bytes", path, off, fi.Size())
		return
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, 1<<62))
	if err != nil {
		fc.bad("%s: %v", path, err)
		return
	}
	end := bytes.LastIndexByte(b, '\n') + 1
	if final && end != len(b) {
		fc.bad("%s: ends with a partial line %q", path, b[end:])
	}
	at := off
	for line := range strings.SplitAfterSeq(string(b[:end]), "\n") {
		if line == "" {
			break // after the last newline
		}
		if err := checkLogLine(strings.TrimSuffix(line, "\n"), debug); err != nil {
			fc.bad("%s at byte %d: %v", path, at, err)
		}
		at += int64(len(line))
	}
	fc.logOff[path] = off + int64(end)
}

func checkLogLine(line string, debug bool) error {
	m := logLine.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("line %q is not in the documented form", line)
	}
	if _, err := store.ParseTime(m[1]); err != nil {
		return err
	}
	if (m[2] == "DEBUG") != debug {
		return fmt.Errorf("level %s in the wrong log: %q", m[2], line)
	}
	return nil
}

// trail checks each snapshot of an operation once.
func (fc *fileChecker) trail(dir, id string) {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fc.bad("%s: %v", dir, err)
	}
	for _, de := range ents {
		path := filepath.Join(dir, de.Name())
		if fc.done[path] {
			continue
		}
		if !strings.HasSuffix(de.Name(), "_"+id+".json") {
			fc.bad("%s: not a trail snapshot of %s", path, id)
		} else if _, err := readState(path, id); err != nil {
			fc.bad("%s: %v", path, err)
		}
		fc.done[path] = true // a snapshot pruned while read is not a problem
	}
}

// tempDir counts the temp files of writers in the directory where the
// ledger makes them; nothing else belongs there.
func (fc *fileChecker) tempDir(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		fc.bad("%s: %v", dir, err)
		return
	}
	for _, de := range ents {
		if name := de.Name(); isTemp(name) {
			fc.temps++
		} else {
			fc.bad("%s: a file the ledger does not write", filepath.Join(dir, name))
		}
	}
}

// isTemp reports whether name has the form of the ledger's temp files.
func isTemp(name string) bool {
	return strings.HasPrefix(name, "~ledger-") && strings.HasSuffix(name, ".tmp")
}

// backups checks each archived operation once, when its state is in place
// (the state is moved last).
func (fc *fileChecker) backups(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		fc.bad("%s: %v", dir, err)
		return
	}
	for _, de := range ents {
		path := filepath.Join(dir, de.Name())
		if fc.done[path] {
			continue
		}
		if !fc.archived(path, de.Name()) {
			continue // not yet moved whole: the journal goes last
		}
		fc.backup(path, de.Name())
		fc.done[path] = true
	}
}

// archived reports whether the backup directory dir of id holds a whole
// archive: its journal, which the archiver moves last, or (an archive
// without a journal, written by an earlier version) a state document
// while no live journal of id is left.
func (fc *fileChecker) archived(dir, id string) bool {
	if _, err := os.Stat(filepath.Join(dir, "operation.journal")); err == nil {
		return true
	}
	if _, err := os.Stat(filepath.Join(fc.dir, id+".operation.journal")); err == nil {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "operation.json"))
	return err == nil
}

func (fc *fileChecker) backup(dir, id string) {
	d, err := readState(filepath.Join(dir, "operation.json"), id)
	switch {
	case err != nil:
		fc.bad("%s: %v", dir, err)
	case d != nil && !d.Finished():
		fc.bad("%s: archived in state %q", dir, d.OperationState)
	}
	for _, name := range []string{"operation.log", "operation.debug.log"} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			fc.log(path, name == "operation.debug.log", true)
		}
	}
	fc.trail(filepath.Join(dir, "trail"), id)
}
