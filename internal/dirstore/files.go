package dirstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tomdist/ledger/journal"
)

// archivedJournal is the name of the journal in an operation's backup
// directory.
const archivedJournal = "operation.journal"

// Temp files are named "~ledger-{random}.tmp": "~" is not in the alphabet
// of ids, so no file of an operation can ever have such a name, and the
// start-up sweep, which deletes only names of exactly this form, can never
// delete one.
//
// The temps of the directory's own files (journals and state documents)
// are made in tempDir, whose name has no temp form either, and renamed
// from there: a rename between directories shows in the watched
// directory only as the arrival of the file, which the watch of loud
// changes leaves out, where a rename within it shows the temp's
// departure too. Without that, every compaction would wake every process
// that watches the operation (see watchLoud).
const (
	tempPrefix = "~ledger-"
	tempSuffix = ".tmp"
	tempDir    = "~ledger-tmp"
)

func isTempName(name string) bool {
	r, ok := strings.CutPrefix(name, tempPrefix)
	if !ok {
		return false
	}
	r, ok = strings.CutSuffix(r, tempSuffix)
	if !ok || r == "" {
		return false
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// createTemp creates a new temp file in dir (a directory of the root).
func (d *Dir) createTemp(dir string) (*os.File, string, error) {
	for range 100 {
		name := path.Join(dir, tempPrefix+strconv.FormatUint(rand.Uint64(), 36)+tempSuffix)
		f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", fmt.Errorf("dirstore: no free temp file name in %s", dir)
}

// writeFile replaces name with data through a temp file: in tempDir for
// a file of the directory itself, else in name's directory, which is
// also where a temp goes that tempDir cannot take (something else than a
// directory is in its place, or a rename from it fails); with Durable,
// the file and its directory are synced.
func (d *Dir) writeFile(name string, data []byte) error {
	dir := path.Dir(name)
	if !d.useTempDir(dir) || d.replace(tempDir, name, data) != nil {
		if err := d.replace(dir, name, data); err != nil {
			return err
		}
		if d.useTempDir(dir) {
			// tempDir failed where dir did not (another file system is
			// mounted on it, say): write beside the files from now on,
			// rather than twice.
			d.noTempDir.Store(true)
		}
	}
	if d.opts.Durable {
		return d.syncDir(dir)
	}
	return nil
}

// useTempDir reports whether the files of dir are written through
// tempDir.
func (d *Dir) useTempDir(dir string) bool {
	return dir == "." && !d.noTempDir.Load() && d.ensureDir(tempDir) == nil
}

// replace writes data to a new temp file in dir and renames it to name;
// with Durable, the file is synced first.
func (d *Dir) replace(dir, name string, data []byte) error {
	f, tmp, err := d.createTemp(dir)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && d.opts.Durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = renameFault.check(tmp)
	}
	if err == nil {
		err = d.root.Rename(tmp, name)
	}
	if err != nil {
		d.root.Remove(tmp)
	}
	return err
}

// syncDir fsyncs a directory of the root.
func (d *Dir) syncDir(dir string) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// writeState writes the state document of id: derived, for people and
// for readers of the Dart layout, so a failure to write it is not the
// change's.
func (d *Dir) writeState(id string, doc []byte) {
	_ = d.writeFile(stateName(id), doc)
}

// removeStaleTemps deletes the store's own temp files that are older
// than a minute: a writer killed between create and rename leaves one;
// live writers are done with theirs in far less. Only regular files with
// the exact temp form are touched, in the directory and tempDir.
func (d *Dir) removeStaleTemps() {
	for _, dir := range []string{".", tempDir} {
		if fi, err := d.root.Lstat(dir); err != nil || !fi.IsDir() {
			continue // not followed if a symlink: writeFile does not use it either
		}
		names, err := readDirNames(d.root, dir)
		if err != nil {
			continue
		}
		for _, name := range names {
			if isTempName(name) {
				d.removeIfStale(path.Join(dir, name))
			}
		}
	}
}

func (d *Dir) removeIfStale(name string) {
	fi, err := d.root.Lstat(name)
	if err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > time.Minute {
		d.root.Remove(name)
	}
}

// appendLogs appends the log lines of recs to the logs of id, one write
// per log. prev are the sizes of the logs before them, logEnd after.
func (d *Dir) appendLogs(id string, recs []journal.Record, prev, logEnd [2]int64) {
	var b [2][]byte
	for _, r := range recs {
		for _, l := range r.Log {
			i := logIndex(l.Level)
			b[i] = append(b[i], journal.FormatLogLine(r.Time, journal.LogLine{Level: l.Level, Participant: l.Participant, Message: oneLine(l.Message)})...)
			b[i] = append(b[i], '\n')
		}
	}
	for i, lines := range b {
		if len(lines) > 0 {
			_ = d.appendFile(logName(id, i == 1), lines)
		}
	}
}

// errNotRegular reports something else than a regular file where the
// store keeps one.
var errNotRegular = errors.New("not a regular file")

// openRegular opens name of the directory with flag, never through a
// symlink and without blocking, and refuses (a *CorruptError) anything
// else than a regular file: whoever may write the directory may put a
// FIFO in a file's place, whose plain open blocks until someone opens
// its other end, with the operation's lock held. It returns the file's
// stat too, taken at the open, which its callers need.
func (d *Dir) openRegular(name string, flag int, perm os.FileMode) (*os.File, fs.FileInfo, error) {
	f, err := d.root.OpenFile(name, flag|noFollow|nonBlock, perm)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = d.corrupt(name, errNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// appendFile appends b to name with one O_APPEND write, creating it.
func (d *Dir) appendFile(name string, b []byte) error {
	f, _, err := d.openRegular(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func logIndex(level string) int {
	if level == "DEBUG" {
		return 1
	}
	return 0
}

// oneLine keeps a message on one log line.
func oneLine(msg string) string {
	if !strings.ContainsAny(msg, "\r\n") {
		return msg
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(msg)
}

// backup is an archived operation found in the backup directory.
type backup struct {
	id  string
	mod time.Time
}

// backups returns the archived operations, oldest first. A directory is
// taken for an archive only if it is a real directory (not a symlink)
// holding a journal or state document of the operation it is named for.
func (d *Dir) backups() ([]backup, error) {
	fi, err := d.root.Lstat(backupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("dirstore: %s is a symbolic link, not the store's directory", backupDir)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("dirstore: %s is not a directory", backupDir)
	}
	names, err := readDirNames(d.root, backupDir)
	if err != nil {
		return nil, err
	}
	var bs []backup
	for _, name := range names {
		if !validID(name) {
			continue
		}
		fi, err := d.root.Lstat(backupName(name))
		if err != nil || !fi.IsDir() || !d.isArchiveOf(name) {
			continue
		}
		bs = append(bs, backup{name, fi.ModTime()})
	}
	slices.SortFunc(bs, func(a, b backup) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return bs, nil
}

// isArchiveOf reports whether backup/{id} holds an archive of id.
func (d *Dir) isArchiveOf(id string) bool {
	if b, err := d.readFile(backupName(id) + "/" + archivedJournal); err == nil {
		_, _, _, err := parseHeader(b, id)
		return err == nil
	}
	b, err := d.readFile(backupName(id) + "/operation.json")
	if err != nil {
		return false
	}
	var doc struct {
		OperationID string `json:"operationId"`
	}
	return json.Unmarshal(b, &doc) == nil && doc.OperationID == id
}

// prune removes the oldest archives beyond MaxBackups.
func (d *Dir) prune() error {
	if d.opts.MaxBackups <= 0 {
		return nil
	}
	_, _, err := d.Prune(d.opts.MaxBackups)
	return err
}

// Prune removes the oldest archived operations beyond keep, and returns
// how many it removed and kept. Only directories that hold an archive of
// the operation they are named for are counted and removed.
func (d *Dir) Prune(keep int) (removed, kept int, err error) {
	if keep < 0 {
		return 0, 0, fmt.Errorf("dirstore: cannot keep %d archives", keep)
	}
	bs, err := d.backups()
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for len(bs) > keep {
		if err := d.root.RemoveAll(backupName(bs[0].id)); err != nil {
			errs = append(errs, err)
		} else {
			removed++
		}
		bs = bs[1:]
	}
	return removed, len(bs), errors.Join(errs...)
}

// ensureDir makes name a directory of the root, refusing anything else
// in its place (a symlink above all).
func (d *Dir) ensureDir(name string) error {
	fi, err := d.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		err = d.root.Mkdir(name, 0o755)
		if errors.Is(err, fs.ErrExist) {
			fi, err = d.root.Lstat(name)
		} else if err == nil {
			return nil
		}
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("dirstore: %s is a symbolic link, not the store's directory", name)
	}
	if !fi.IsDir() {
		return fmt.Errorf("dirstore: %s is not a directory", name)
	}
	return nil
}
