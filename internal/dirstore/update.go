package dirstore

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
	"slices"
	"sync"
	"time"

	"github.com/tomdist/ledger/journal"
)

// Create implements journal.Store.
func (d *Dir) Create(ctx context.Context, id string, c journal.Change) (journal.Tail, error) {
	if err := checkID(id); err != nil {
		return journal.Tail{}, err
	}
	if c.Archive {
		return journal.Tail{}, errors.New("dirstore: Create: an operation cannot be archived at once")
	}
	e, err := d.acquire(id)
	if err != nil {
		return journal.Tail{}, err
	}
	defer d.release(id, e)
	unlock, err := d.lockOp(ctx, id, e, true)
	if err != nil {
		return journal.Tail{}, err
	}
	unlock = onceFunc(unlock)
	defer unlock()
	created := false
	defer func() {
		if !created {
			// The lock file of an operation that does not live goes.
			d.root.Remove(lockName(id))
		}
	}()
	for _, name := range []string{journalName(id), stateName(id), backupName(id)} {
		if _, err := d.root.Lstat(name); err == nil {
			created = name != backupName(id) // a live one keeps its lock file
			return journal.Tail{}, fmt.Errorf("%w: %s", journal.ErrExists, id)
		}
	}
	recs, lines, logEnd, err := d.frame(id, 0, [2]int64{}, time.Now(), c.Records)
	if err != nil {
		return journal.Tail{}, err
	}
	hdr, err := encodeHeader(header{OperationID: id, Created: time.Now().UTC()}, nil)
	if err != nil {
		return journal.Tail{}, err
	}
	if err := d.writeFile(journalName(id), append(hdr, lines...)); err != nil {
		return journal.Tail{}, err
	}
	created = true
	d.appendLogs(id, recs, [2]int64{}, logEnd)
	if c.Snapshot != nil {
		d.writeState(id, c.Snapshot)
	}
	tail := journal.Tail{Records: recs}
	unlock()
	d.notify(id, tail, 0)
	return tail, nil
}

// Update implements journal.Store.
func (d *Dir) Update(ctx context.Context, id string, after journal.Rev, fn func(journal.Tail) (journal.Change, error)) (journal.Tail, error) {
	if err := checkID(id); err != nil {
		return journal.Tail{}, err
	}
	e, err := d.acquire(id)
	if err != nil {
		return journal.Tail{}, err
	}
	defer d.release(id, e)
	unlock, err := d.lockOp(ctx, id, e, false)
	if errors.Is(err, journal.ErrNotFound) {
		return journal.Tail{}, d.gone(id)
	}
	if err != nil {
		return journal.Tail{}, err
	}
	tail, f, from, appended, err := d.update(ctx, id, e, after, fn)
	unlock()
	if err == nil {
		d.notify(id, tail, from)
	}
	if f == nil {
		return tail, err
	}
	defer f.Close()
	if err == nil && appended && d.opts.Durable {
		// After the unlock, so that the writers queued behind this one
		// append meanwhile and one sync covers several of them.
		err = d.sync.sync(id, f)
	}
	if err != nil {
		return journal.Tail{}, err
	}
	return tail, nil
}

// gone tells an operation that is not live: archived or unknown.
func (d *Dir) gone(id string) error {
	if _, err := d.root.Lstat(backupName(id) + "/" + archivedJournal); err == nil {
		return fmt.Errorf("%w: %s", journal.ErrArchived, id)
	}
	if _, err := d.root.Lstat(backupName(id) + "/operation.json"); err == nil {
		return fmt.Errorf("%w: %s", journal.ErrArchived, id)
	}
	return notFound(id)
}

// update runs an Update under the lock. It returns the journal, open,
// and whether records were appended to it, for the caller to sync and
// close.
func (d *Dir) update(ctx context.Context, id string, e *entry, after journal.Rev, fn func(journal.Tail) (journal.Change, error)) (tail journal.Tail, f *os.File, from journal.Rev, appended bool, err error) {
	f, fi, err := d.openRegular(journalName(id), os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return d.adoptAndChange(ctx, id, e, after, fn)
	}
	if err != nil {
		return journal.Tail{}, nil, 0, false, err
	}
	st, err := d.catchUpLocked(id, e, f, fi, after)
	if err != nil {
		return journal.Tail{}, f, 0, false, err
	}
	c, err := fn(st.tail)
	if err != nil {
		return journal.Tail{}, f, 0, false, err
	}
	if c.Archive {
		// The state document moves: no Dart process may be rewriting it.
		release, err := d.holdDartLock(ctx, id)
		if err != nil {
			return journal.Tail{}, f, 0, false, err
		}
		defer release()
	}
	tail, appended, err = d.commit(ctx, id, e, f, st, c)
	return tail, f, st.pos.rev, appended, err
}

// adoptAndChange runs an Update of an operation that has a state
// document but no journal (the Dart ledger's, or an earlier version's):
// fn sees the document as a snapshot at position 1, and only if it makes
// a change is the document given a journal, which the change is appended
// to. A change refused leaves the document as it is. The Dart lock is
// held meanwhile, so that no Dart process rewrites the document.
func (d *Dir) adoptAndChange(ctx context.Context, id string, e *entry, after journal.Rev, fn func(journal.Tail) (journal.Change, error)) (journal.Tail, *os.File, journal.Rev, bool, error) {
	if _, err := d.root.Lstat(stateName(id)); err == nil {
		release, err := d.holdDartLock(ctx, id)
		if err != nil {
			return journal.Tail{}, nil, 0, false, err
		}
		defer release()
	}
	t, err := d.readOther(ctx, id, after)
	if err != nil {
		return journal.Tail{}, nil, 0, false, err
	}
	if t.Archived {
		return journal.Tail{}, nil, 0, false, fmt.Errorf("%w: %s", journal.ErrArchived, id)
	}
	c, err := fn(t)
	if err != nil {
		return journal.Tail{}, nil, 0, false, err
	}
	if len(c.Records) == 0 && c.Snapshot == nil {
		return t, nil, 1, false, nil
	}
	f, fi, err := d.adopt(id)
	if err != nil {
		return journal.Tail{}, nil, 0, false, err
	}
	st, err := d.catchUpLocked(id, e, f, fi, 1)
	if err != nil {
		return journal.Tail{}, f, 0, false, err
	}
	st.tail = t
	tail, appended, err := d.commit(ctx, id, e, f, st, c)
	return tail, f, 1, appended, err
}

// catchUpLocked reads the journal f, of stat fi, after the caller's
// position, under the lock: a torn tail is cut, an operation marked
// archived is moved away (ErrArchived), and log lines a killed writer did
// not write are written.
func (d *Dir) catchUpLocked(id string, e *entry, f *os.File, fi fs.FileInfo, after journal.Rev) (state, error) {
	st, err := d.catchUp(id, e, f, fi, after, true)
	if err != nil {
		return state{}, err
	}
	if st.archived {
		if err := d.finishArchive(id); err != nil {
			return state{}, err
		}
		return state{}, fmt.Errorf("%w: %s", journal.ErrArchived, id)
	}
	d.repairLogs(id, f, st)
	return st, nil
}

// commit applies change c to the journal f, read to st. It returns the
// tail st holds followed by the records appended. The caller holds the
// lock.
func (d *Dir) commit(ctx context.Context, id string, e *entry, f *os.File, st state, c journal.Change) (journal.Tail, bool, error) {
	if c.Archive && c.Snapshot == nil {
		return journal.Tail{}, false, errors.New("dirstore: an archiving change needs a snapshot")
	}
	tail := st.tail
	if len(c.Records) > 0 {
		recs, lines, logEnd, err := d.frame(id, st.pos.rev, st.pos.logEnd, time.Now(), c.Records)
		if err != nil {
			return journal.Tail{}, false, err
		}
		if err := d.appendJournal(f, lines); err != nil {
			return journal.Tail{}, false, err
		}
		if !c.Quiet {
			signalLoud(f)
		}
		prev := st.pos.logEnd
		at := st.pos.off
		st.pos.offs = slices.Clip(st.pos.offs) // copies of pos share the array
		for _, n := range lineLens(lines) {
			st.pos.offs = append(st.pos.offs, at)
			at += n
		}
		st.pos.rev = recs[len(recs)-1].Rev
		st.pos.off += int64(len(lines))
		st.pos.logEnd = logEnd
		e.setPos(st.pos)
		d.appendLogs(id, recs, prev, logEnd)
		tail.Records = append(slices.Clip(tail.Records), recs...)
	}
	switch {
	case c.Archive:
		if err := d.archive(ctx, id, f, st.pos, c.Snapshot); err != nil {
			return journal.Tail{}, false, err
		}
		tail.Archived = true
	case c.Snapshot != nil:
		if err := d.compact(id, e, st.pos, c.Snapshot); err != nil {
			return journal.Tail{}, false, err
		}
		tail.Base = st.pos.rev
	}
	return tail, len(c.Records) > 0, nil
}

// frame gives records the positions after prev and encodes their lines.
// Records without a Time get now.
func (d *Dir) frame(id string, prev journal.Rev, logEnd [2]int64, now time.Time, in []journal.Record) ([]journal.Record, []byte, [2]int64, error) {
	out := make([]journal.Record, len(in))
	var b []byte
	for i, r := range in {
		r.Rev = prev + journal.Rev(i) + 1
		if r.Time.IsZero() {
			r.Time = now
		}
		r.Time = r.Time.UTC().Round(0)
		l := line{Rev: r.Rev, Time: r.Time, Body: r.Body}
		for _, ll := range r.Log {
			l.Log = append(l.Log, logEntry{Level: ll.Level, Participant: ll.Participant, Message: oneLine(ll.Message)})
			logEnd[logIndex(ll.Level)] += int64(len(journal.FormatLogLine(r.Time, ll)) + 1)
		}
		l.LogEnd = logEnd
		var err error
		if b, err = appendFramed(b, l, r.Body...); err != nil {
			return nil, nil, logEnd, fmt.Errorf("dirstore: record of %s: %w", id, err)
		}
		out[i] = r
	}
	return out, b, logEnd, nil
}

// appendJournal writes lines to the journal with one write.
func (d *Dir) appendJournal(f *os.File, lines []byte) error {
	if err := writeFault.check(f.Name()); err != nil {
		return err
	}
	n, err := f.Write(lines)
	if err != nil {
		if n > 0 {
			// A short write leaves a torn line; cut it now rather than
			// leave it to the next writer.
			if fi, serr := f.Stat(); serr == nil {
				f.Truncate(fi.Size() - int64(n))
			}
		}
		return err
	}
	return nil
}

// state is what catchUp found: the tail after the caller's position and
// the journal's end.
type state struct {
	tail     journal.Tail
	pos      position
	archived bool
}

// catchUp reads the journal open as f, of stat fi (taken at the open),
// from the position after: from this process's last position when it
// can, else from the start. With locked, the caller holds the lock and a
// torn tail is cut off.
func (d *Dir) catchUp(id string, e *entry, f *os.File, fi fs.FileInfo, after journal.Rev, locked bool) (state, error) {
	if err := d.checkSize(journalName(id), fi.Size()); err != nil {
		return state{}, err
	}
	pos := e.getPos()
	if pos.file == nil || !os.SameFile(pos.file, fi) || after < pos.base || after > pos.rev || fi.Size() < pos.off ||
		journal.Rev(len(pos.offs)) != pos.rev-pos.base {
		return d.readWhole(id, e, f, fi, after, locked)
	}
	from, prev, logEnd := pos.resume(after, locked)
	buf, same, err := readFrom(f, fi, pos.hdr, from)
	if err != nil {
		return state{}, err
	}
	var c chunk
	if same {
		c, err = parseRecords(buf, prev, after, logEnd)
	}
	if !same || err != nil || from+c.n < pos.off {
		// Another file under the same inode number (a compaction), or
		// lines this process read whole that are not there any more (a
		// file cut or rewritten in place): the position means nothing.
		// Read the file from its start, which tells corruption.
		return d.readWhole(id, e, f, fi, after, locked)
	}
	if c.torn && locked {
		if err := f.Truncate(from + c.n); err != nil {
			return state{}, err
		}
	}
	// The records past pos are new to this process: remember where they
	// start (in a new array: copies of pos share the old one).
	pos.offs = slices.Clip(pos.offs)
	for i, o := range c.offs {
		if rev := prev + journal.Rev(i) + 1; rev > pos.rev {
			pos.offs = append(pos.offs, from+o)
		}
	}
	if end := from + c.n; end > pos.off {
		pos.rev, pos.off, pos.logEnd = prev+journal.Rev(len(c.offs)), end, c.logEnd
	}
	e.setPos(pos)
	tail := journal.Tail{Base: pos.base, Records: c.records, Source: d.pathOf(journalName(id))}
	return state{tail: tail, pos: pos, archived: c.archived}, nil
}

// resume returns where a reader at position after reads p's file from:
// the offset of the record after it, that record's predecessor and the
// log ends before it (-1 where this process does not know them). The
// records known to this process are not read again, but for a writer
// (locked), which re-reads the last one it knows: it appends only after
// a record still there whole.
func (p *position) resume(after journal.Rev, locked bool) (from int64, prev journal.Rev, logEnd [2]int64) {
	k := after
	if locked && k == p.rev && k > p.base {
		k--
	}
	if k == p.rev {
		return p.off, p.rev, p.logEnd
	}
	return p.offs[k-p.base], k, [2]int64{-1, -1}
}

// readFrom reads f (of size fi.Size()) from the line boundary at from,
// and reports whether f is still the file in which that offset was found:
// its header line is hdr and a newline precedes from. The inode number
// alone does not tell (see header.Epoch); the newline keeps a file
// rewritten in place from being read, or cut, from the middle of a line.
func readFrom(f *os.File, fi fs.FileInfo, hdr []byte, from int64) (buf []byte, same bool, err error) {
	if len(hdr) == 0 || from < int64(len(hdr)) {
		return nil, false, nil
	}
	head := make([]byte, len(hdr))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	if !bytes.Equal(head, hdr) {
		return nil, false, nil
	}
	buf = make([]byte, fi.Size()-from+1)
	n, err := f.ReadAt(buf, from-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	if n == 0 || buf[0] != '\n' {
		return nil, false, nil
	}
	return buf[1:n], true, nil
}

// readWhole reads the journal f from its start; catchUp, its caller,
// has checked its size.
func (d *Dir) readWhole(id string, e *entry, f *os.File, fi fs.FileInfo, after journal.Rev, locked bool) (state, error) {
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return state{}, err
	}
	p, err := parseJournal(b, id)
	if err != nil {
		return state{}, d.corrupt(journalName(id), err)
	}
	if p.torn && locked {
		if err := f.Truncate(p.end); err != nil {
			return state{}, err
		}
	}
	pos := position{file: fi, hdr: p.hdrLine, created: p.hdr.Created, base: p.hdr.Base, body: p.body, rev: p.rev(), off: p.end, logEnd: p.logEnd, offs: p.offs}
	if e != nil {
		e.setPos(pos)
	}
	t := p.tail(after)
	t.Source = d.pathOf(journalName(id))
	return state{tail: t, pos: pos, archived: p.archived || p.hdr.Archived}, nil
}

// tail returns what a reader at position after has not seen of p: the
// records after it or, if it is behind the snapshot (or ahead of the
// journal, a reader of something else), the snapshot and every record.
func (p *parsed) tail(after journal.Rev) journal.Tail {
	t := journal.Tail{Base: p.hdr.Base}
	if after >= p.hdr.Base && after <= p.rev() {
		t.Records = p.records[after-p.hdr.Base:]
		return t
	}
	t.Records = p.records
	t.Snapshot = p.snapshot
	if t.Snapshot == nil {
		t.Snapshot = []byte{}
	}
	return t
}

// parseJournal parses a whole journal file.
func parseJournal(b []byte, id string) (*parsed, error) {
	h, snap, body, err := parseHeader(b, id)
	if err != nil {
		return nil, err
	}
	c, err := parseRecords(b[body:], h.Base, h.Base, h.LogEnd)
	if err != nil {
		return nil, err
	}
	for i := range c.offs {
		c.offs[i] += body
	}
	return &parsed{
		hdr: h, hdrLine: bytes.Clone(b[:bytes.IndexByte(b, '\n')+1]), snapshot: snap, body: body, records: c.records, offs: c.offs, logEnds: c.logEnds,
		logEnd: c.logEnd, end: body + c.n, archived: c.archived, torn: c.torn,
	}, nil
}

func (e *entry) getPos() position {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pos
}

// setPos records a position this process reached; a reader that is
// behind does not move it back.
func (e *entry) setPos(p position) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pos.file == nil || !os.SameFile(e.pos.file, p.file) || p.rev >= e.pos.rev {
		e.pos = p
	}
}

// Read implements journal.Store.
func (d *Dir) Read(ctx context.Context, id string, after journal.Rev) (journal.Tail, error) {
	if err := checkID(id); err != nil {
		return journal.Tail{}, err
	}
	e, err := d.acquire(id)
	if err != nil {
		return journal.Tail{}, err
	}
	defer d.release(id, e)
	f, fi, err := d.openRegular(journalName(id), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return d.readOther(ctx, id, after)
	}
	if err != nil {
		return journal.Tail{}, err
	}
	defer f.Close()
	st, err := d.catchUp(id, e, f, fi, after, false)
	if err != nil {
		return journal.Tail{}, err
	}
	st.tail.Archived = st.archived
	return st.tail, nil
}

// readOther reads an operation without a live journal: archived, or a
// state document without a journal (written by the Dart ledger or an
// earlier version), which reads as a snapshot at position 1 (a document
// a Dart process is rewriting is waited for: see readStateDoc).
func (d *Dir) readOther(ctx context.Context, id string, after journal.Rev) (journal.Tail, error) {
	b, err := d.readFile(backupName(id) + "/" + archivedJournal)
	if err == nil {
		p, err := parseJournal(b, id)
		if err != nil {
			return journal.Tail{}, d.corrupt(backupName(id)+"/"+archivedJournal, err)
		}
		t := p.tail(after)
		t.Archived, t.Source = true, d.pathOf(backupName(id)+"/"+archivedJournal)
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return journal.Tail{}, err
	}
	for _, name := range []string{stateName(id), backupName(id) + "/operation.json"} {
		doc, err := d.readStateDoc(ctx, id, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return journal.Tail{}, err
		}
		if derived(doc) {
			// Written from a journal that is gone.
			return journal.Tail{}, notFound(id)
		}
		t := journal.Tail{Base: 1, Archived: name != stateName(id), Source: d.pathOf(name)}
		if after != 1 {
			t.Snapshot = doc
		}
		return t, nil
	}
	return journal.Tail{}, notFound(id)
}

// adopt gives a state document without a journal (the Dart ledger's, or
// an earlier version's) a journal: the document becomes its snapshot at
// position 1. The caller holds the lock.
func (d *Dir) adopt(id string) (*os.File, fs.FileInfo, error) {
	doc, err := d.readFile(stateName(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, d.gone(id)
	}
	if err != nil {
		return nil, nil, err
	}
	if derived(doc) {
		return nil, nil, notFound(id) // its journal is gone
	}
	logEnd := [2]int64{fileSize(d.root, logName(id, false)), fileSize(d.root, logName(id, true))}
	hdr, err := encodeHeader(header{OperationID: id, Created: time.Now().UTC(), Base: 1, LogEnd: logEnd}, doc)
	if err != nil {
		return nil, nil, err
	}
	if err := d.writeFile(journalName(id), hdr); err != nil {
		return nil, nil, err
	}
	return d.openRegular(journalName(id), os.O_RDWR|os.O_APPEND, 0)
}

// fileSize returns the size of a regular file, or 0.
func fileSize(root *os.Root, name string) int64 {
	fi, err := root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}

// readFile reads a regular file of the directory, refusing a symlink
// and anything else than a regular file (see openRegular).
func (d *Dir) readFile(name string) ([]byte, error) {
	f, fi, err := d.openRegular(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := d.checkSize(name, fi.Size()); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err == nil {
		err = d.checkSize(name, int64(len(b)))
	}
	return b, err
}

// maxFileSize bounds the files the store reads into memory. A journal is
// compacted long before it gets near; a larger file was put there by
// someone else (a sparse file of a terabyte costs nothing to make, and
// reading it would exhaust memory).
const maxFileSize = 1 << 30

// checkSize refuses (a *CorruptError) to read a file of size bytes.
func (d *Dir) checkSize(name string, size int64) error {
	if size > maxFileSize {
		return d.corrupt(name, fmt.Errorf("%d bytes, more than the store reads (%d)", size, int64(maxFileSize)))
	}
	return nil
}

// onceFunc returns f that runs at most once.
func onceFunc(f func()) func() { return sync.OnceFunc(f) }

// notify calls the callbacks of the options for the records of tail that
// follow after (those the change appended), and for an archive.
func (d *Dir) notify(id string, tail journal.Tail, after journal.Rev) {
	if cb := d.opts.OnLogLine; cb != nil {
		for _, r := range tail.Records {
			if r.Rev <= after {
				continue
			}
			for _, l := range r.Log {
				l.Message = oneLine(l.Message)
				cb(id, journal.FormatLogLine(r.Time, l))
			}
		}
	}
	if cb := d.opts.OnBackupCreated; cb != nil && tail.Archived {
		cb(id, filepath.Join(d.path, backupDir, id))
	}
}

// derived reports whether a state document was written from a journal
// (it has journalRev): such a document alone is no operation, its journal
// is gone. The Dart ledger's documents have no journalRev.
func derived(doc []byte) bool {
	var v struct {
		JournalRev uint64 `json:"journalRev"`
	}
	return json.Unmarshal(doc, &v) == nil && v.JournalRev != 0
}

// adoptable reports whether id has a state document without a journal
// that a change may give one (see adopt), or one that cannot be read
// (the change then says why).
func (d *Dir) adoptable(id string) bool {
	doc, err := d.readFile(stateName(id))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	return !derived(doc)
}

// pathOf returns the path of a file of the directory.
func (d *Dir) pathOf(name string) string { return filepath.Join(d.path, filepath.FromSlash(name)) }

// lineLens returns the lengths of the lines of b, newlines included.
func lineLens(b []byte) []int64 {
	var ns []int64
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			i = len(b) - 1
		}
		ns = append(ns, int64(i+1))
		b = b[i+1:]
	}
	return ns
}
