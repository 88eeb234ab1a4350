// Package timeline makes the timeline of an operation from its log: one
// lane per participant, one bar per call, from its CALL_STARTED or
// CALL_SPAWNED line to its CALL_ENDED, CALL_COMPLETED or CALL_FAILED line,
// or to the CRASH_DETECTED line that names it. The log is all it needs, so
// archived operations have their timeline too. The server's dashboard and
// `ledger show --svg` draw it (svg.go).
//
// A lane is a participant id: the processes of one participant id share
// it, as the log names participants by id. Raw call frames
// (CreateCallFrame) log nothing and have no bar. The log is trusted as it
// is: a participant that writes a line shaped like an event with
// Operation.Log adds to the timeline.
package timeline

import (
	"bufio"
	"bytes"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

// Status is how a bar ended.
type Status string

// The statuses of a bar.
const (
	Running     Status = "running"     // still open; the operation goes on
	Ended       Status = "ended"       // ended well (CALL_ENDED, CALL_COMPLETED)
	Failed      Status = "failed"      // CALL_FAILED
	Crashed     Status = "crashed"     // named by CRASH_DETECTED
	Interrupted Status = "interrupted" // still open when the operation ended
)

// Bar is one call.
type Bar struct {
	CallID      string
	Description string
	Spawned     bool // CALL_SPAWNED rather than CALL_STARTED
	Start, End  time.Time
	Status      Status
	Reason      string // the failure's reason, or who was declared crashed
	Row         int    // the row of the lane it is drawn in: calls that overlap get rows of their own
}

// Lane is one participant.
type Lane struct {
	Participant string
	Joined      time.Time   // its first line
	Left        time.Time   // PARTICIPANT_LEFT; zero if it did not leave
	Crashes     []time.Time // CRASH_DETECTED lines that name it
	Bars        []*Bar      // in the order the calls started
	Rows        int         // rows its bars need (at least 1)
}

// Timeline is an operation drawn from its log.
type Timeline struct {
	Operation string
	Start     time.Time // the first line
	End       time.Time // the end of the operation, or now
	Outcome   string    // "completed" or "failed" once the operation ended; "" while it runs
	Reason    string    // the reason of OPERATION_FAILED
	Lanes     []*Lane   // in the order participants first appear
}

// Calls returns the number of bars.
func (t *Timeline) Calls() int {
	n := 0
	for _, l := range t.Lanes {
		n += len(l.Bars)
	}
	return n
}

// Parse reads the log of operation id ("<time> [LEVEL] <participant>
// <message>" lines; others are skipped). Calls still open at the end of a
// log of an operation that goes on are running until now.
func Parse(id string, log []byte, now time.Time) *Timeline {
	p := &parser{t: &Timeline{Operation: id}, lanes: map[string]*Lane{}, open: map[string]*Bar{}}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if l, ok := parseLine(sc.Text()); ok {
			p.take(l)
		}
	}
	p.finish(now)
	return p.t
}

// line is one parsed log line.
type line struct {
	at          time.Time
	participant string
	event       string
	rest        string // the message after the event word
}

// parseLine reads "<time> [LEVEL] <participant> <EVENT> <rest>".
func parseLine(s string) (line, bool) {
	ts, s, ok := strings.Cut(s, " [")
	if !ok {
		return line{}, false
	}
	_, s, ok = strings.Cut(s, "] ")
	if !ok {
		return line{}, false
	}
	who, msg, _ := strings.Cut(s, " ")
	at, err := store.ParseTime(ts)
	if err != nil || who == "" {
		return line{}, false
	}
	event, rest, _ := strings.Cut(msg, " ")
	return line{at: at.Time, participant: who, event: event, rest: strings.TrimSpace(rest)}, true
}

// parser builds a Timeline line by line.
type parser struct {
	t     *Timeline
	lanes map[string]*Lane
	open  map[string]*Bar // by call id
	ended bool            // OPERATION_COMPLETED or OPERATION_FAILED seen
}

func (p *parser) lane(who string, at time.Time) *Lane {
	l := p.lanes[who]
	if l == nil {
		l = &Lane{Participant: who, Joined: at}
		p.lanes[who] = l
		p.t.Lanes = append(p.t.Lanes, l)
	}
	return l
}

func (p *parser) take(l line) {
	if p.t.Start.IsZero() {
		p.t.Start = l.at
	}
	if l.at.After(p.t.End) {
		p.t.End = l.at
	}
	switch l.event {
	case "OPERATION_CREATED", "PARTICIPANT_JOINED":
		p.lane(l.participant, l.at)
	case "PARTICIPANT_LEFT":
		p.lane(l.participant, l.at).Left = l.at
	case "CALL_STARTED", "CALL_SPAWNED":
		callID, desc, _ := strings.Cut(l.rest, " ")
		if callID == "" || p.open[callID] != nil {
			return
		}
		b := &Bar{CallID: callID, Description: strings.TrimSpace(desc), Spawned: l.event == "CALL_SPAWNED", Start: l.at, Status: Running}
		ln := p.lane(l.participant, l.at)
		ln.Bars = append(ln.Bars, b)
		p.open[callID] = b
	case "CALL_ENDED", "CALL_COMPLETED":
		p.close(l.rest, l.at, Ended, "")
	case "CALL_FAILED":
		callID, reason, _ := strings.Cut(l.rest, " ")
		p.close(callID, l.at, Failed, strings.TrimSpace(reason))
	case "CRASH_DETECTED":
		p.crash(l)
	case "OPERATION_COMPLETED":
		p.ended, p.t.Outcome = true, "completed"
	case "OPERATION_FAILED":
		p.ended, p.t.Outcome, p.t.Reason = true, "failed", l.rest
	}
}

// close ends the open bar of callID.
func (p *parser) close(callID string, at time.Time, st Status, reason string) {
	b := p.open[callID]
	if b == nil {
		return
	}
	delete(p.open, callID)
	b.End, b.Status, b.Reason = at, st, reason
}

// crash takes "CRASH_DETECTED <participant>/<pid>@<host> calls=<ids>" or
// the orphan sweep's "CRASH_DETECTED all participants are gone ...".
func (p *parser) crash(l line) {
	victim, calls, ok := strings.Cut(l.rest, " calls=")
	if !ok {
		for id := range p.open {
			p.close(id, l.at, Crashed, l.rest)
		}
		for _, ln := range p.t.Lanes {
			if ln.Left.IsZero() {
				ln.Crashes = append(ln.Crashes, l.at)
			}
		}
		return
	}
	who, _, _ := strings.Cut(victim, "/")
	ln := p.lane(who, l.at)
	ln.Crashes = append(ln.Crashes, l.at)
	for _, id := range strings.Split(calls, ",") {
		if id != "" {
			p.close(id, l.at, Crashed, "participant "+victim+" crashed")
		}
	}
}

// finish ends the bars still open and gives every bar its row.
func (p *parser) finish(now time.Time) {
	t := p.t
	if t.Start.IsZero() { // no line yet
		t.Start, t.End = now, now
	}
	if !p.ended && now.After(t.End) {
		t.End = now
	}
	st := Running
	if p.ended {
		st = Interrupted
	}
	for _, b := range p.open {
		b.End, b.Status = t.End, st
	}
	for _, ln := range t.Lanes {
		ln.Rows = pack(ln.Bars)
	}
}

// pack gives each bar the first row where it overlaps no other, in the
// order they started, and returns the rows used (at least 1).
func pack(bars []*Bar) int {
	var ends []time.Time // the end of the last bar of each row
	for _, b := range bars {
		row := -1
		for i, e := range ends {
			if !b.Start.Before(e) {
				row = i
				break
			}
		}
		if row < 0 {
			row = len(ends)
			ends = append(ends, time.Time{})
		}
		ends[row] = b.End
		b.Row = row
	}
	return max(1, len(ends))
}
