package dirstore

import (
	"bytes"
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
