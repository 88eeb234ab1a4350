package dirstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/tomdist/ledger/journal"
)

// compact replaces the journal of id by one that starts with snapshot, the
// state at pos, and writes the state document and a trail snapshot. The
// caller holds the lock and has read the journal to pos.
func (d *Dir) compact(id string, e *entry, pos position, snapshot []byte) error {
	hdr, err := encodeHeader(header{OperationID: id, Created: pos.created, Base: pos.rev, LogEnd: pos.logEnd}, snapshot)
	if err != nil {
		return err
	}
	if err := d.writeFile(journalName(id), hdr); err != nil {
		return err
	}
	d.writeState(id, snapshot)
	d.trail(id, pos.created)
	return nil
}

// trail links the state document of id into its trail and keeps the
// newest MaxTrail snapshots.
func (d *Dir) trail(id string, created time.Time) {
	if d.opts.MaxTrail <= 0 || d.ensureDir(trailName(id)) != nil {
		return
	}
	elapsed := max(time.Since(created).Milliseconds(), 0)
	name := fmt.Sprintf("%s/%012d_%s.json", trailName(id), elapsed, id)
	if err := d.root.Link(stateName(id), name); err != nil {
		return
	}
	names, err := readDirNames(d.root, trailName(id))
	if err != nil || len(names) <= d.opts.MaxTrail {
		return
	}
	slices.Sort(names)
	for _, n := range names[:len(names)-d.opts.MaxTrail] {
		d.root.Remove(trailName(id) + "/" + n)
	}
}

// archive ends the journal of id: the state document is written, an
// archive marker appended, and the files are moved to backup/{id}. The
// caller holds the lock. Once the marker is in the journal, the operation
// takes no more records; anyone who finds a marked journal still in place
// (its archiver died) finishes the move.
func (d *Dir) archive(ctx context.Context, id string, f *os.File, pos position, snapshot []byte) error {
	d.writeState(id, snapshot)
	marker, err := appendFramed(nil, line{Rev: pos.rev, Time: time.Now().UTC(), LogEnd: pos.logEnd, Archive: true})
	if err != nil {
		return err
	}
	if err := d.appendJournal(f, marker); err != nil {
		return err
	}
	if d.opts.Durable {
		if err := d.sync.sync(id, f); err != nil {
			return err
		}
	}
	return d.finishArchive(id)
}

// finishArchive moves the files of an operation whose journal carries the
// archive marker to backup/{id}, removes its lock file and liveness
// directory, and prunes old backups. It may run again after a crash: what
// is already moved is skipped. The caller holds the lock.
func (d *Dir) finishArchive(id string) error {
	dst := backupName(id)
	if err := d.ensureDir(backupDir); err != nil {
		return err
	}
	if err := d.ensureDir(dst); err != nil {
		return err
	}
	moves := []struct{ from, to string }{
		{logName(id, false), "operation.log"},
		{logName(id, true), "operation.debug.log"},
		{trailName(id), "trail"},
		{stateName(id), "operation.json"},
		{journalName(id), archivedJournal}, // last: its absence means archived
	}
	for _, m := range moves {
		err := d.root.Rename(m.from, dst+"/"+m.to)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// Waiters that get the lock of the removed file see it is gone.
	d.root.Remove(lockName(id))
	d.root.RemoveAll(liveName(id))
	if d.opts.Durable {
		for _, dir := range []string{dst, backupDir, "."} {
			if err := d.syncDir(dir); err != nil {
				return err
			}
		}
	}
	now := time.Now()
	d.root.Chtimes(dst, now, now) // the backup's age is its archive time
	// Pruning is housekeeping: the operation is archived whatever it
	// meets, and the next archive tries again.
	_ = d.prune()
	return nil
}

// repairLogs appends to the logs of id the lines of records that a killed
// writer appended to the journal but not to the logs. The caller holds
// the lock and has read the journal f to st.pos.
func (d *Dir) repairLogs(id string, f *os.File, st state) {
	size := [2]int64{fileSize(d.root, logName(id, false)), fileSize(d.root, logName(id, true))}
	if size[0] >= st.pos.logEnd[0] && size[1] >= st.pos.logEnd[1] {
		return
	}
	fi, err := f.Stat()
	if err != nil || d.checkSize(journalName(id), fi.Size()) != nil {
		return
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return
	}
	p, err := parseJournal(b, id)
	if err != nil {
		return
	}
	for i := range size {
		d.repairLog(id, i, size[i], p)
	}
}

// repairLog restores log i (0 info, 1 debug) of size size from the
// records of p: every line whose record ends the log beyond size is
// appended, after cutting a line that was written in part.
func (d *Dir) repairLog(id string, i int, size int64, p *parsed) {
	var missing []byte
	cut := size
	for k, r := range p.records {
		var lines []byte
		for _, l := range r.Log {
			if logIndex(l.Level) == i {
				lines = append(lines, journal.FormatLogLine(r.Time, l)...)
				lines = append(lines, '\n')
			}
		}
		end := p.logEnds[k][i]
		if len(lines) == 0 || end <= size {
			continue
		}
		if start := end - int64(len(lines)); start < cut {
			cut = start
		}
		missing = append(missing, lines...)
	}
	if len(missing) == 0 {
		return
	}
	name := logName(id, i == 1)
	if cut < size {
		if f, _, err := d.openRegular(name, os.O_WRONLY, 0); err == nil {
			f.Truncate(cut)
			f.Close()
		}
	}
	_ = d.appendFile(name, missing)
}
