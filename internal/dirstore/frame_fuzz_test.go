package dirstore

import (
	"bytes"
	"hash/crc32"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/journal"
)

const fuzzID = "20261201T00:00:00.000-fuzz-00000001"

// fuzzJournal builds a journal file as the store writes it: a header
// with snapshot snap at base, then records base+1.. with bodies.
func fuzzJournal(tb testing.TB, base journal.Rev, snap []byte, bodies ...string) []byte {
	b, err := encodeHeader(header{OperationID: fuzzID, Created: time.Unix(1, 0).UTC(), Base: base}, snap)
	require.NoError(tb, err)
	for i, body := range bodies {
		l := line{Rev: base + journal.Rev(i) + 1, Time: time.Unix(2, 0).UTC(), LogEnd: [2]int64{int64(i), 0},
			Log: []logEntry{{Level: "INFO", Participant: "p", Message: "m"}}, Body: []byte(body)}
		b, err = appendFramed(b, l, l.Body...)
		require.NoError(tb, err)
	}
	return b
}

// reframe gives every line of b a right checksum, so that the fuzzer
// reaches the decoding of what the checksums guard.
func reframe(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		l, rest, found := bytes.Cut(b, []byte{'\n'})
		if len(l) >= 9 && l[8] == ' ' {
			l = l[9:]
		}
		out = appendCRC(out, crc32.Checksum(l, castagnoli))
		out = append(append(out, ' '), l...)
		if found {
			out = append(out, '\n')
		}
		b = rest
	}
	return out
}

// FuzzParseJournal feeds arbitrary bytes to the journal decoder (with
// reframe, each line with a right checksum), as a whole file and from
// each record's offset (the way a reader resumes
// from its position). It never panics, never allocates beyond the input
// (the snapshot length in the header is checked against the file), and
// what it accepts is consistent: records follow each other from the
// snapshot's position, their offsets are line starts inside the complete
// lines, and a reader that resumes at any record's offset reads the same
// records as one that read the whole file.
func FuzzParseJournal(f *testing.F) {
	valid := fuzzJournal(f, 0, nil, `{"a":1}`, `{"b":2}`, `{"c":3}`)
	f.Add(valid, false)
	f.Add(fuzzJournal(f, 7, []byte(`{"snap":true}`), `{}`, `{"x":"\u00e9"}`), false)
	f.Add(fuzzJournal(f, 3, []byte("line one\nline two"), ``), false)
	f.Add(valid[:len(valid)-5], false)                                      // torn tail
	f.Add(bytes.Replace(valid, []byte(`"b":2`), []byte(`"b":3`), 1), false) // checksum of a middle line
	f.Add(bytes.Replace(valid, []byte(`"c":3`), []byte(`"c":4`), 1), false) // checksum of the last line
	marker, err := appendFramed(nil, line{Rev: 3, Archive: true})
	require.NoError(f, err)
	f.Add(append(bytes.Clone(valid), marker...), false)
	f.Add(append(append(bytes.Clone(valid), marker...), valid[bytes.IndexByte(valid, '\n')+1:]...), false)
	huge, err := appendFramed(nil, map[string]any{"journal": 1, "operationId": fuzzID, "snapshotLen": int64(1) << 62})
	require.NoError(f, err)
	f.Add(huge, false)
	neg, err := appendFramed(nil, map[string]any{"journal": 1, "operationId": fuzzID, "snapshotLen": -5, "base": -1})
	require.NoError(f, err)
	f.Add(neg, false)
	f.Add([]byte("00000000 \n"), false)
	f.Add([]byte("zzzzzzzz {}\n"), false)
	f.Add([]byte{}, false)
	f.Add([]byte("{\"journal\":1,\"operationId\":\""+fuzzID+"\",\"base\":4}\n{\"rev\":5}\t{}\n{\"rev\":7}\n"), true)
	f.Add([]byte("{\"journal\":1,\"operationId\":\""+fuzzID+"\",\"snapshotLen\":2,\"snapshotCrc\":0}\n{}\n{\"rev\":1,\"archive\":true}\n"), true)

	f.Fuzz(func(t *testing.T, b []byte, frame bool) {
		if frame {
			b = reframe(b)
		}
		p, err := parseJournal(b, fuzzID)
		if err != nil {
			return
		}
		require.LessOrEqual(t, p.end, int64(len(b)))
		require.LessOrEqual(t, p.body, p.end)
		require.Equal(t, p.torn, p.end < int64(len(b)), "bytes after the complete lines are a torn tail")
		require.Len(t, p.offs, len(p.records), "every record has an offset")
		require.Len(t, p.logEnds, len(p.records))
		assert.Equal(t, int64(len(p.snapshot)), p.hdr.SnapshotLen)
		for i, r := range p.records {
			require.Equal(t, p.hdr.Base+journal.Rev(i)+1, r.Rev, "records follow each other")
			off := p.offs[i]
			require.True(t, off >= p.body && off < p.end, "offset %d of record %d outside the records", off, r.Rev)
			require.Equal(t, byte('\n'), b[off-1], "record %d does not start a line", r.Rev)
			c, err := parseRecords(b[off:p.end], r.Rev-1, r.Rev-1, [2]int64{-1, -1})
			require.NoError(t, err, "resuming at record %d", r.Rev)
			require.Equal(t, p.records[i:], c.records, "resuming at record %d", r.Rev)
			assert.Equal(t, p.archived, c.archived)
		}
		if !p.hdr.Archived && !p.archived && !p.torn {
			// What the store appends to an accepted journal reads back.
			next := p.rev() + 1
			l := line{Rev: next, Time: time.Unix(3, 0).UTC(), Body: []byte(`{"n":1}`)}
			more, err := appendFramed(bytes.Clone(b[:p.end]), l, l.Body...)
			require.NoError(t, err)
			q, err := parseJournal(more, fuzzID)
			require.NoError(t, err)
			require.Equal(t, next, q.rev())
		}
	})
}
