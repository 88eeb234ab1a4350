package dirstore

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/journal"
)

// FuzzDecodeLineFast: whatever the fast decoder of a record line accepts,
// encoding/json decodes to the same line; and it accepts the lines that
// appendFramed writes.
func FuzzDecodeLineFast(f *testing.F) {
	f.Add([]byte(`{"rev":2,"time":"2026-12-01T08:24:51.178Z","log":[{"l":"INFO","p":"a","m":"CALL_STARTED call_a_1_1340 "}],"logEnd":[115,0]}`))
	f.Add([]byte(`{"rev":3,"time":"2026-12-01T08:24:51.178046101Z","logEnd":[174,0]}`))
	f.Add([]byte(`{"rev":3,"time":"2026-12-01T08:24:51Z","logEnd":[174,9],"archive":true}`))
	f.Add([]byte(`{"rev":3,"time":"2026-12-01T08:24:51Z","log":[{"l":"INFO","p":"a","m":"x"},{"l":"DEBUG","p":"b","m":"y\u00e9"}],"logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":03,"time":"2026-12-01T08:24:51Z","logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":1,"time":"2026-12-01T08:24:51+02:00","logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":1,"time":"2024-02-29T23:59:59.9Z","logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":1,"time":"2026-12-01T08:24:51.1234567891Z","logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":1,"time":"2026-12-01T08:24:51.Z","log":[{"l":"WARNING","p":"a","m":"b"}],"logEnd":[1,2]}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		var fast line
		if !decodeLineFast(js, &fast) {
			return
		}
		var slow line
		require.NoError(t, json.Unmarshal(js, &slow), "accepted by the fast decoder only")
		assert.Equal(t, slow.Rev, fast.Rev)
		assert.True(t, slow.Time.Equal(fast.Time), "time %v, fast %v", slow.Time, fast.Time)
		assert.Equal(t, slow.Time.Location().String(), fast.Time.Location().String())
		assert.Equal(t, slow.record().Log, fast.record().Log)
		assert.Equal(t, slow.LogEnd, fast.LogEnd)
		assert.Equal(t, slow.Archive, fast.Archive)
	})
}

// TestDecodeLineFastReadsWhatIsWritten: the lines the store writes take
// the fast way.
func TestDecodeLineFastReadsWhatIsWritten(t *testing.T) {
	for _, l := range []line{
		{Rev: 7, Time: time.Date(2026, 12, 1, 8, 0, 0, 123456789, time.UTC), Log: []logEntry{{"INFO", "alice", "CALL_STARTED call_alice_1_ab12 build"}}, LogEnd: [2]int64{100, 3}},
		{Rev: 8, Time: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), LogEnd: [2]int64{1 << 40, 0}},
		{Rev: 8, Time: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), Archive: true},
	} {
		js, err := json.Marshal(l)
		require.NoError(t, err)
		var got line
		require.True(t, decodeLineFast(js, &got), "%s", js)
		assert.Equal(t, l.Rev, got.Rev)
		assert.True(t, l.Time.Equal(got.Time))
		assert.Equal(t, l.record().Log, got.record().Log)
		assert.Equal(t, l.LogEnd, got.LogEnd)
		assert.Equal(t, l.Archive, got.Archive)
	}
}

// TestParseTimeAsTimeParse: the times of record lines read as time.Parse
// reads them, on the way without it and off it.
func TestParseTimeAsTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-12-01T08:24:51Z", "2026-12-01T08:24:51.1Z", "2026-12-01T08:24:51.123456789Z",
		"2024-02-29T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
		"2026-12-01T08:24:51.1234567891Z", "2026-12-01T08:24:51+02:00", "2026-12-01T08:24:51.5-01:30",
	} {
		want, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err, s)
		got, ok := parseTime([]byte(s))
		require.True(t, ok, s)
		assert.True(t, want.Equal(got), "%s: %v, want %v", s, got, want)
		assert.Equal(t, want.Location().String(), got.Location().String(), s)
	}
	for _, s := range []string{
		"2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-12-01T24:00:00Z",
		"2026-12-01T08:60:00Z", "2026-12-01T08:24:61Z", "2026-12-01T08:24:51.Z", "2026-12-01T08:24:51", "2026-12-01 08:24:51Z",
		"+026-12-01T08:24:51Z", "2026-12-01T08:24:51.-1Z",
	} {
		_, err := time.Parse(time.RFC3339Nano, s)
		_, ok := parseTime([]byte(s))
		assert.Equal(t, err == nil, ok, s)
		if _, fast := parseUTC([]byte(s)); fast {
			assert.NoError(t, err, "%s taken by the fast way", s)
		}
	}
}

// TestParseCRC: the checksums of lines read in either case, and nothing
// else does.
func TestParseCRC(t *testing.T) {
	for _, c := range []uint32{0, 1, 0xdeadbeef, 0xffffffff, 0x0a0b0c0d} {
		b := appendCRC(nil, c)
		got, ok := parseCRC(b)
		require.True(t, ok)
		assert.Equal(t, c, got)
		got, ok = parseCRC(bytes.ToUpper(b))
		require.True(t, ok)
		assert.Equal(t, c, got)
	}
	for _, s := range []string{"", "1234567", "123456789", "1234567g", "+1234567", " 1234567", "0x123456"} {
		_, ok := parseCRC([]byte(s))
		assert.False(t, ok, s)
	}
}

// BenchmarkParseRecords reads 100 record lines of a call's start, as
// every process reads the records of the others.
func BenchmarkParseRecords(b *testing.B) {
	var buf []byte
	logEnd := [2]int64{}
	for i := 0; i < 100; i++ {
		l := line{Rev: journal.Rev(i + 1), Time: time.Now().UTC().Round(0), Log: []logEntry{{"INFO", "worker-12", "CALL_STARTED call_worker-12_33_ab12cd "}}, LogEnd: logEnd}
		var err error
		buf, err = appendFramed(buf, l, []byte(`{"ops":[{"op":"frame","frame":{"participantId":"worker-12","callId":"call_worker-12_33_ab12cd","pid":12345,"startTime":"2026-12-01T15:04:05.123Z","lastHeartbeat":"2026-12-01T15:04:05.123Z","host":"myhost"}}]}`)...)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseRecords(buf, 0, 0, [2]int64{}); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodeHeaderFast: whatever the fast decoder of a header line
// accepts, encoding/json decodes to the same header; and it accepts the
// headers that encodeHeader writes.
func FuzzDecodeHeaderFast(f *testing.F) {
	for _, h := range []header{
		{OperationID: "op", Created: time.Date(2026, 12, 1, 8, 0, 0, 123456789, time.UTC)},
		{OperationID: "20261201T08:00:00.000-build-1a2b", Created: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), Base: 4096, LogEnd: [2]int64{1 << 20, 77}, Archived: true},
	} {
		hdr, err := encodeHeader(h, []byte(`{"n":1}`))
		require.NoError(f, err)
		js, _, err := nextLine(hdr)
		require.NoError(f, err)
		f.Add(js)
	}
	f.Add([]byte(`{"journal":1,"operationId":"a","created":"2026-12-01T08:00:00Z","base":0,"logEnd":[0,0],"epoch":18446744073709551615}`))
	f.Add([]byte(`{"journal":1,"operationId":"a","created":"2026-12-01T08:00:00Z","base":0,"logEnd":[0,0],"epoch":18446744073709551616}`))
	f.Add([]byte(`{"journal":1,"operationId":"a","created":"2026-12-01T08:00:00+01:00","base":1,"snapshotCrc":4294967296,"logEnd":[0,0]}`))
	f.Add([]byte(`{"journal":2,"operationId":"a","created":"2026-12-01T08:00:00Z","base":0,"logEnd":[0,0],"archived":false}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		var fast header
		if !decodeHeaderFast(js, &fast) {
			return
		}
		var slow header
		require.NoError(t, json.Unmarshal(js, &slow), "accepted by the fast decoder only")
		assert.True(t, slow.Created.Equal(fast.Created), "created %v, fast %v", slow.Created, fast.Created)
		assert.Equal(t, slow.Created.Location().String(), fast.Created.Location().String())
		slow.Created, fast.Created = time.Time{}, time.Time{}
		assert.Equal(t, slow, fast)
	})
}

// TestDecodeHeaderFastReadsWhatIsWritten: the headers the store writes,
// epochs of every size included, take the fast way.
func TestDecodeHeaderFastReadsWhatIsWritten(t *testing.T) {
	for range 100 {
		h := header{OperationID: "op-1", Created: time.Now().UTC().Round(0), Base: 300, LogEnd: [2]int64{12345, 0}}
		b, err := encodeHeader(h, []byte(`{"n":1}`))
		require.NoError(t, err)
		js, _, err := nextLine(b)
		require.NoError(t, err)
		var got header
		require.True(t, decodeHeaderFast(js, &got), "%s", js)
		var want header
		require.NoError(t, json.Unmarshal(js, &want))
		assert.True(t, want.Created.Equal(got.Created))
		want.Created, got.Created = time.Time{}, time.Time{}
		assert.Equal(t, want, got)
	}
}
