package dirstore

import (
	"bytes"
	"strconv"
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
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return false
	}
	var log []logEntry
	if p.lit(`,"log":[`) {
		for {
			var e logEntry
			if !p.lit(`{"l":`) {
				return false
			}
			if e.Level, ok = p.str(); !ok || !p.lit(`,"p":`) {
				return false
			}
			if e.Participant, ok = p.str(); !ok || !p.lit(`,"m":`) {
				return false
			}
			if e.Message, ok = p.str(); !ok || !p.lit(`}`) {
				return false
			}
			log = append(log, e)
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
	*l = line{Rev: journal.Rev(rev), Time: t, Log: log, LogEnd: [2]int64{a, b}, Archive: archive, Body: l.Body}
	return true
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
	i := 0
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == 0 || i > 18 || i > 1 && p.b[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.b[:i]), 10, 64)
	if err != nil {
		return 0, false
	}
	p.b = p.b[i:]
	return n, true
}

// str reads a string without escapes or control characters.
func (p *fastParser) str() (string, bool) {
	if len(p.b) == 0 || p.b[0] != '"' {
		return "", false
	}
	end := bytes.IndexByte(p.b[1:], '"')
	if end < 0 {
		return "", false
	}
	s := p.b[1 : 1+end]
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(s) {
		return "", false
	}
	p.b = p.b[end+2:]
	return string(s), true
}
