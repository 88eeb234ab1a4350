package dirstore

import (
	"bytes"
	"math/bits"
	"time"
	"unicode/utf8"

	"github.com/tomdist/ledger/journal"
)

// decodeLineFast decodes the JSON of a record line as appendFramed wrote
// it: {"rev":N,"time":"…","log":[{"l":"…","p":"…","m":"…"},…],"logEnd":[A,B]},
// "log" omitted when empty and ,"archive":true at the end of a marker. It
// reports false for anything else, strings with escapes included, which
// encoding/json then decodes: every process reads every record of the
// operations it follows, and that decoder took a quarter of their time.
// The log goes to l.logLines, not l.Log.
func decodeLineFast(js []byte, l *line) bool {
	p := fastParser{b: js}
	if !p.lit(`{"rev":`) {
		return false
	}
	rev, ok := p.int()
	if !ok || !p.lit(`,"time":`) {
		return false
	}
	ts, ok := p.str()
	if !ok {
		return false
	}
	t, ok := parseTime(ts)
	if !ok {
		return false
	}
	var log []journal.LogLine
	if p.lit(`,"log":[`) {
		for {
			if !p.lit(`{"l":`) {
				return false
			}
			level, ok := p.str()
			if !ok || !p.lit(`,"p":`) {
				return false
			}
			participant, ok := p.str()
			if !ok || !p.lit(`,"m":`) {
				return false
			}
			message, ok := p.str()
			if !ok || !p.lit(`}`) {
				return false
			}
			log = append(log, journal.LogLine{Level: levelString(level), Participant: string(participant), Message: string(message)})
			if p.lit(`]`) {
				break
			}
			if !p.lit(`,`) {
				return false
			}
		}
	}
	if !p.lit(`,"logEnd":[`) {
		return false
	}
	a, ok := p.int()
	if !ok || !p.lit(`,`) {
		return false
	}
	b, ok := p.int()
	if !ok || !p.lit(`]`) {
		return false
	}
	archive := p.lit(`,"archive":true`)
	if !p.lit(`}`) || len(p.b) != 0 {
		return false
	}
	*l = line{Rev: journal.Rev(rev), Time: t, LogEnd: [2]int64{a, b}, Archive: archive, Body: l.Body, logLines: log}
	return true
}

// decodeHeaderFast decodes the JSON of a journal's header line as
// encodeHeader wrote it: {"journal":1,"operationId":"…","created":"…",
// "base":N,"snapshotLen":N,"snapshotCrc":N,"logEnd":[A,B],"archived":true,
// "epoch":N}, the members after "base" but "logEnd" omitted when zero.
// It reports false for anything else, which encoding/json then decodes:
// a process reads a header whenever it finds a journal compacted.
func decodeHeaderFast(js []byte, h *header) bool {
	p := fastParser{b: js}
	var v header
	if !p.lit(`{"journal":`) {
		return false
	}
	if version, ok := p.int(); !ok || version != journalVersion || !p.lit(`,"operationId":`) {
		return false
	}
	id, ok := p.str()
	if !ok || !p.lit(`,"created":`) {
		return false
	}
	created, ok := p.str()
	if !ok {
		return false
	}
	if v.Created, ok = parseTime(created); !ok || !p.lit(`,"base":`) {
		return false
	}
	base, ok := p.int()
	if !ok {
		return false
	}
	if p.lit(`,"snapshotLen":`) {
		if v.SnapshotLen, ok = p.int(); !ok {
			return false
		}
	}
	if p.lit(`,"snapshotCrc":`) {
		c, ok := p.int()
		if !ok || c > 1<<32-1 {
			return false
		}
		v.SnapshotCRC = uint32(c)
	}
	if !p.lit(`,"logEnd":[`) {
		return false
	}
	if v.LogEnd[0], ok = p.int(); !ok || !p.lit(`,`) {
		return false
	}
	if v.LogEnd[1], ok = p.int(); !ok || !p.lit(`]`) {
		return false
	}
	v.Archived = p.lit(`,"archived":true`)
	if p.lit(`,"epoch":`) {
		if v.Epoch, ok = p.uint64(); !ok {
			return false
		}
	}
	if !p.lit(`}`) || len(p.b) != 0 {
		return false
	}
	v.Version, v.OperationID, v.Base = journalVersion, string(id), journal.Rev(base)
	*h = v
	return true
}

// levelString returns b as a string, the levels the ledger writes
// without allocating.
func levelString(b []byte) string {
	for _, s := range [...]string{"INFO", "DEBUG", "WARNING", "ERROR"} {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// parseTime reads a time as encoding/json writes a UTC time.Time:
// 2006-01-02T15:04:05Z with up to nine digits of fraction before the Z.
// Anything else (an offset, a leap second, 31 April) goes to time.Parse,
// which gives the same results but builds a string and takes longer.
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := parseUTC(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t, err == nil
}

func parseUTC(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	digits := func(s []byte) int {
		v := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := digits(b[0:4]), digits(b[5:7]), digits(b[8:10])
	hour, min, sec := digits(b[11:13]), digits(b[14:16]), digits(b[17:19])
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		if nsec = digits(frac[1:]); nsec < 0 {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC)
	if t.Day() != day { // 31 April, 29 February of a common year
		return time.Time{}, false
	}
	return t, true
}

// fastParser reads the JSON that decodeLineFast accepts.
type fastParser struct{ b []byte }

func (p *fastParser) lit(s string) bool {
	if len(p.b) < len(s) || string(p.b[:len(s)]) != s {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// int reads a non-negative integer without leading zeros.
func (p *fastParser) int() (int64, bool) {
	var n int64
	i := 0
	for ; i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9'; i++ {
		n = n*10 + int64(p.b[i]-'0')
	}
	if i == 0 || i > 18 || i > 1 && p.b[0] == '0' {
		return 0, false // 18 digits cannot overflow
	}
	p.b = p.b[i:]
	return n, true
}

// uint64 reads a non-negative integer without leading zeros that fits
// in a uint64.
func (p *fastParser) uint64() (uint64, bool) {
	i := 0
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == 0 || i > 20 || i > 1 && p.b[0] == '0' {
		return 0, false
	}
	var n uint64
	for _, c := range p.b[:i] {
		hi, lo := bits.Mul64(n, 10)
		if hi != 0 || lo+uint64(c-'0') < lo {
			return 0, false
		}
		n = lo + uint64(c-'0')
	}
	p.b = p.b[i:]
	return n, true
}

// str reads a string without escapes or control characters.
func (p *fastParser) str() ([]byte, bool) {
	if len(p.b) == 0 || p.b[0] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(p.b[1:], '"')
	if end < 0 {
		return nil, false
	}
	s := p.b[1 : 1+end]
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return nil, false
		}
	}
	if !utf8.Valid(s) {
		return nil, false
	}
	p.b = p.b[end+2:]
	return s, true
}
