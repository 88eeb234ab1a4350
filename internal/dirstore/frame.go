package dirstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"time"

	"github.com/tomdist/ledger/journal"
)

// A journal file is lines of the form "<crc> <json>\n", where crc is the
// CRC-32C of the rest of the line in 8 hex digits; a record line carries
// its body after its JSON and a tab, "<crc> <json>\t<body>\n", so that
// reading the store's own fields does not scan the body (JSON has no
// raw tab). The first line is the header; when
// the header says so, the snapshot follows it as raw bytes (its length and
// CRC are in the header) and a newline; then come the records, one line
// each. Lines are appended with O_APPEND under the operation's lock, so a
// torn write can only be a tail without its newline, which the next writer
// cuts off. A complete line whose CRC does not match is corruption.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const journalVersion = 1

// header is the first line of a journal file.
type header struct {
	Version     int    `json:"journal"`
	OperationID string `json:"operationId"`
	// Created is when the operation's journal was first created; trail
	// snapshots are named by the time elapsed since.
	Created time.Time `json:"created"`
	// Base is the position of the snapshot that follows; records start at
	// Base+1.
	Base journal.Rev `json:"base"`
	// SnapshotLen and SnapshotCRC describe the snapshot bytes; zero length
	// means none.
	SnapshotLen int64  `json:"snapshotLen,omitempty"`
	SnapshotCRC uint32 `json:"snapshotCrc,omitempty"`
	// LogEnd is the size of the info and debug logs with the lines of
	// every record up to Base.
	LogEnd [2]int64 `json:"logEnd"`
	// Archived marks a journal whose operation is archived: it is moved to
	// the backup directory and takes no record.
	Archived bool `json:"archived,omitempty"`
	// Epoch is random, new for every journal file written (at creation,
	// adoption and each compaction). A reader's remembered position is
	// good only in the file it was taken in, and the inode number does
	// not tell: the file system may give a compacted journal the number
	// of the one it replaced. The header line, epoch included, does.
	// Journals written before it have none (zero).
	Epoch uint64 `json:"epoch,omitempty"`
}

// line is one record line of a journal file, or a marker.
type line struct {
	Rev  journal.Rev `json:"rev"`
	Time time.Time   `json:"time"`
	Log  []logEntry  `json:"log,omitempty"`
	// LogEnd is the size of the info and debug logs once this record's
	// lines are in them: a writer that finds them shorter appends what is
	// missing.
	LogEnd [2]int64 `json:"logEnd"`
	// Body is the record's body, written after the JSON and a tab.
	Body []byte `json:"-"`
	// Archive marks the end of the journal: the operation is being
	// archived. It carries no record (Rev repeats the last one).
	Archive bool `json:"archive,omitempty"`
	// logLines is Log as decodeLineFast reads it: in the record's type,
	// which record takes as it is.
	logLines []journal.LogLine
}

type logEntry struct {
	Level       string `json:"l"`
	Participant string `json:"p"`
	Message     string `json:"m"`
}

// appendFramed appends "<crc> <v as JSON>\n" to b, or with a body
// "<crc> <v as JSON>\t<body>\n".
func appendFramed(b []byte, v any, body ...byte) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	if body != nil {
		if bytes.IndexByte(body, '\t') >= 0 {
			return b, errors.New("dirstore: a record body may not contain a raw tab")
		}
		js = append(append(js, '\t'), body...)
	}
	if bytes.IndexByte(js, '\n') >= 0 {
		return b, errors.New("dirstore: a journal line may not contain a line break")
	}
	b = appendCRC(b, crc32.Checksum(js, castagnoli))
	b = append(b, ' ')
	b = append(b, js...)
	return append(b, '\n'), nil
}

// parseCRC reads the 8 hex digits appendCRC writes, in either case.
func parseCRC(b []byte) (uint32, bool) {
	var c uint32
	for _, d := range b {
		switch {
		case d >= '0' && d <= '9':
			d -= '0'
		case d >= 'a' && d <= 'f':
			d -= 'a' - 10
		case d >= 'A' && d <= 'F':
			d -= 'A' - 10
		default:
			return 0, false
		}
		c = c<<4 | uint32(d)
	}
	return c, len(b) == 8
}

func appendCRC(b []byte, c uint32) []byte {
	const hex = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hex[c>>uint(shift)&0xf])
	}
	return b
}

// errTorn reports a line without its newline at the end of the data: a
// write in progress, or one cut short by a crash.
var errTorn = errors.New("torn line")

// nextLine splits the first framed line off b and checks its CRC. It
// returns the JSON, the length of the line with its newline, or errTorn
// when b holds no complete line.
func nextLine(b []byte) (js []byte, n int, err error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return nil, 0, errTorn
	}
	l := b[:nl]
	if len(l) < 10 || l[8] != ' ' {
		return nil, 0, fmt.Errorf("line %.40q is not framed", l)
	}
	want, ok := parseCRC(l[:8])
	if !ok {
		return nil, 0, fmt.Errorf("line %.40q is not framed", l)
	}
	js = l[9:]
	if crc32.Checksum(js, castagnoli) != want {
		return nil, 0, fmt.Errorf("line %.40q fails its checksum", l)
	}
	return js, nl + 1, nil
}

// parsed is a journal file read from its start: the header, the snapshot
// and the records, and where the complete lines end.
type parsed struct {
	hdr      header
	hdrLine  []byte // the header line, newline included (a copy)
	snapshot []byte
	body     int64 // offset of the first record line
	records  []journal.Record
	offs     []int64    // where each record starts in the file
	logEnds  [][2]int64 // the log ends recorded with each record
	logEnd   [2]int64   // log sizes after the last record
	end      int64      // offset after the last complete line
	archived bool       // an archive marker was found
	torn     bool       // bytes after end: a torn or unfinished line
}

// rev returns the position after the records read.
func (p *parsed) rev() journal.Rev {
	if n := len(p.records); n > 0 {
		return p.records[n-1].Rev
	}
	return p.hdr.Base
}

// parseHeader reads the header and snapshot at the start of b.
func parseHeader(b []byte, id string) (header, []byte, int64, error) {
	js, n, err := nextLine(b)
	if err != nil {
		return header{}, nil, 0, fmt.Errorf("header: %w", err)
	}
	var h header
	if !decodeHeaderFast(js, &h) {
		if err := json.Unmarshal(js, &h); err != nil {
			return header{}, nil, 0, fmt.Errorf("header: %w", err)
		}
	}
	switch {
	case h.Version != journalVersion:
		return header{}, nil, 0, fmt.Errorf("header: journal version %d, want %d", h.Version, journalVersion)
	case h.OperationID != id:
		return header{}, nil, 0, fmt.Errorf("header: operationId %q does not match the file name", h.OperationID)
	case h.SnapshotLen < 0 || h.SnapshotLen > 0 && h.SnapshotLen > int64(len(b)-n-1):
		return header{}, nil, 0, fmt.Errorf("header: snapshot of %d bytes does not fit the file", h.SnapshotLen)
	}
	off := int64(n)
	var snap []byte
	if h.SnapshotLen > 0 {
		snap = b[off : off+h.SnapshotLen]
		if crc32.Checksum(snap, castagnoli) != h.SnapshotCRC || b[off+h.SnapshotLen] != '\n' {
			return header{}, nil, 0, errors.New("snapshot fails its checksum")
		}
		off += h.SnapshotLen + 1
	}
	return h, snap, off, nil
}

// chunk is what parseRecords read of a run of record lines.
type chunk struct {
	records  []journal.Record
	offs     []int64    // where each record read starts, from the chunk's start (all, not only those kept)
	logEnds  [][2]int64 // the log ends recorded with each of records
	logEnd   [2]int64   // the log ends after the last record
	n        int64      // length of the complete lines read
	archived bool       // an archive marker was met
	torn     bool       // a torn line follows
}

// parseRecords reads the record lines of b (which starts at a line
// boundary) whose positions follow prev, keeping those after skip.
// logEnd are the log ends before them.
func parseRecords(b []byte, prev, skip journal.Rev, logEnd [2]int64) (chunk, error) {
	c := chunk{logEnd: logEnd}
	if n := bytes.Count(b, []byte{'\n'}); n > 0 { // lines, so records, at most
		c.offs, c.records, c.logEnds = make([]int64, 0, n), make([]journal.Record, 0, n), make([][2]int64, 0, n)
	}
	for len(b) > 0 {
		js, ln, err := nextLine(b)
		if errors.Is(err, errTorn) || err != nil && lastLine(b) {
			// A torn line, or a complete last line that fails its
			// checksum (a write cut short by a power cut).
			c.torn = true
			return c, nil
		}
		if err != nil {
			return c, err
		}
		var l line
		if tab := bytes.IndexByte(js, '\t'); tab >= 0 {
			js, l.Body = js[:tab], js[tab+1:]
		}
		if !decodeLineFast(js, &l) {
			// A line of its own, so that l does not escape to the heap
			// on the fast path.
			slow := line{Body: l.Body}
			if err := json.Unmarshal(js, &slow); err != nil {
				return c, fmt.Errorf("record after %d: %w", prev, err)
			}
			l = slow
		}
		if c.archived {
			return c, fmt.Errorf("record %d after the archive marker", l.Rev)
		}
		if l.Archive {
			c.archived = true
		} else {
			if l.Rev != prev+1 {
				return c, fmt.Errorf("record %d follows record %d", l.Rev, prev)
			}
			prev = l.Rev
			c.logEnd = l.LogEnd
			c.offs = append(c.offs, c.n)
			if l.Rev > skip {
				c.records = append(c.records, l.record())
				c.logEnds = append(c.logEnds, l.LogEnd)
			}
		}
		b = b[ln:]
		c.n += int64(ln)
	}
	return c, nil
}

// lastLine reports whether b holds exactly one newline, at its end.
func lastLine(b []byte) bool {
	i := bytes.IndexByte(b, '\n')
	return i == len(b)-1
}

func (l *line) record() journal.Record {
	r := journal.Record{Rev: l.Rev, Time: l.Time, Body: l.Body, Log: l.logLines}
	if r.Log == nil && len(l.Log) > 0 {
		r.Log = make([]journal.LogLine, len(l.Log))
		for i, e := range l.Log {
			r.Log[i] = journal.LogLine{Level: e.Level, Participant: e.Participant, Message: e.Message}
		}
	}
	return r
}

// encodeHeader returns the header line and snapshot of a journal file.
func encodeHeader(h header, snapshot []byte) ([]byte, error) {
	h.Version = journalVersion
	h.Epoch = rand.Uint64() | 1 // never zero, which means "none"
	h.SnapshotLen = int64(len(snapshot))
	h.SnapshotCRC = 0
	if len(snapshot) > 0 {
		h.SnapshotCRC = crc32.Checksum(snapshot, castagnoli)
	}
	b, err := appendFramed(nil, h)
	if err != nil {
		return nil, err
	}
	if len(snapshot) > 0 {
		b = append(append(b, snapshot...), '\n')
	}
	return b, nil
}
