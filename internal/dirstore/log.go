package dirstore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/tomdist/ledger/journal"
)

// ReadLog implements journal.Store. The log of a live operation is its
// log file and, if a writer died between appending records and their log
// lines, the lines of those records (the next writer appends them to the
// file).
func (d *Dir) ReadLog(ctx context.Context, id string, debug bool) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	i := 0
	if debug {
		i = 1
	}
	f, _, err := d.openRegular(journalName(id), os.O_RDONLY, 0)
	if err == nil {
		defer f.Close()
		return d.readLiveLog(id, f, i)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	name := logName(id, debug)
	if !d.isLive(id) {
		if _, err := d.root.Lstat(backupName(id)); err != nil {
			return nil, notFound(id)
		}
		name = backupName(id) + "/operation.log"
		if debug {
			name = backupName(id) + "/operation.debug.log"
		}
	}
	b, err := d.readFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// readLiveLog reads log i of the live operation whose journal is f.
func (d *Dir) readLiveLog(id string, f *os.File, i int) ([]byte, error) {
	b, err := d.readFile(logName(id, i == 1))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := d.checkSize(journalName(id), fi.Size()); err != nil {
		return nil, err
	}
	jb := make([]byte, fi.Size())
	if _, err := f.ReadAt(jb, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	p, err := parseJournal(jb, id)
	if err != nil {
		return nil, d.corrupt(journalName(id), err)
	}
	size := int64(len(b))
	if size >= p.logEnd[i] {
		return b, nil
	}
	// Lines are missing: add those of the records past the file's end,
	// after cutting a line written in part.
	cut, missing := size, []byte(nil)
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
		cut = min(cut, end-int64(len(lines)))
		missing = append(missing, lines...)
	}
	return append(b[:max(cut, 0)], missing...), nil
}
