package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

// calls is what the journals say the workers did.
type calls struct {
	started map[string]bool   // tokens of B records: StartCall was called
	callID  map[string]string // token -> call id, from S records
	acked   []string          // tokens of A records, in journal order
}

// readJournals reads every journal in dir. A last line without its newline
// (none is expected: each record is one write) is ignored.
func readJournals(dir string) (*calls, error) {
	c := &calls{started: map[string]bool{}, callID: map[string]string{}}
	paths, err := filepath.Glob(filepath.Join(dir, "*.journal"))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if err := c.read(p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *calls) read(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[:len(lines)-1] {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == recBegin:
			c.started[f[1]] = true
		case len(f) == 3 && f[0] == recStarted:
			c.callID[f[1]] = f[2]
		case len(f) == 2 && f[0] == recAcked:
			c.acked = append(c.acked, f[1])
		case len(f) >= 1 && (f[0] == recJoined || f[0] == recClosed):
		default:
			return fmt.Errorf("%s: bad record %q", path, line)
		}
	}
	return nil
}

// events is what the operation log says happened.
type events struct {
	startedBy map[string]string    // call id -> token (the description), CALL_STARTED
	starts    map[string]int       // call id -> CALL_STARTED lines
	tokens    map[string]int       // token -> CALL_STARTED lines
	ends      map[string]int       // call id -> CALL_ENDED lines
	crashed   map[string]int       // call id -> CRASH_DETECTED lines listing it
	verdicts  map[string]int       // participant key -> CRASH_DETECTED lines naming it
	firstSeen map[string]time.Time // participant key -> time of its first verdict
	joins     map[string]int       // participant id -> PARTICIPANT_JOINED lines
	order     []string             // call ids in CALL_STARTED order
	sweep     bool                 // an orphan sweep declared everyone gone
}

func parseLog(path string) (*events, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ev := &events{startedBy: map[string]string{}, starts: map[string]int{}, tokens: map[string]int{},
		ends: map[string]int{}, crashed: map[string]int{}, verdicts: map[string]int{}, joins: map[string]int{}, firstSeen: map[string]time.Time{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue // reported by the file checks
		}
		at, _ := store.ParseTime(m[1])
		ev.add(at.Time, m[3], strings.Fields(m[4]))
	}
	return ev, sc.Err()
}

func (ev *events) add(at time.Time, participant string, f []string) {
	if len(f) < 2 {
		return
	}
	switch f[0] {
	case "PARTICIPANT_JOINED":
		ev.joins[participant]++
	case "CALL_STARTED":
		if ev.starts[f[1]] == 0 {
			ev.order = append(ev.order, f[1])
		}
		ev.starts[f[1]]++
		if len(f) > 2 {
			ev.startedBy[f[1]] = f[2]
			ev.tokens[f[2]]++
		}
	case "CALL_ENDED":
		ev.ends[f[1]]++
	case "CRASH_DETECTED":
		if f[1] == "all" {
			ev.sweep = true
			return
		}
		if ev.verdicts[f[1]] == 0 {
			ev.firstSeen[f[1]] = at
		}
		ev.verdicts[f[1]]++
		if len(f) > 2 {
			for _, id := range strings.Split(strings.TrimPrefix(f[2], "calls="), ",") {
				if id != "" {
					ev.crashed[id]++
				}
			}
		}
	}
}

// tally counts what the checks found; every count is a violation. A gap
// is a change that is in the state but whose log line is missing, where a
// kill of its writer would explain it. A store that wrote the state and
// then the log in two steps had such gaps; the journal, whose records
// carry their log lines, must have none. Gaps are counted apart from
// inconsistencies to say which of the two a finding is.
type tally struct {
	lost, doubled, undetected, falseCrash, inconsistent, gaps int
	details                                                   []string // the violations
	gapDetails                                                []string
}

func (t *tally) note(n *int, format string, args ...any) {
	*n++
	t.details = append(t.details, fmt.Sprintf(format, args...))
}

func (t *tally) gap(format string, args ...any) {
	t.gaps++
	t.gapDetails = append(t.gapDetails, "gap: "+fmt.Sprintf(format, args...))
}

// gapOr counts a finding as a gap when a kill explains it, else as an
// inconsistency.
func (t *tally) gapOr(killed bool, format string, args ...any) {
	if killed {
		t.gap(format, args...)
		return
	}
	t.note(&t.inconsistent, format, args...)
}

// owner returns the participant id in a call id call_{participant}_{n}_{hex}.
func owner(callID string) string {
	s := strings.TrimPrefix(callID, "call_")
	for range 2 {
		if i := strings.LastIndexByte(s, '_'); i >= 0 {
			s = s[:i]
		}
	}
	return s
}

// checkCalls compares the journals with the log and the final state:
// every acknowledged StartCall has its CALL_STARTED once, every
// acknowledged End its CALL_ENDED once and no frame; no call id or token
// starts twice; every logged call was started by a worker and ends exactly
// once (CALL_ENDED, or listed by a CRASH_DETECTED). killed holds the
// participant ids of the killed workers.
func (t *tally) checkCalls(c *calls, ev *events, final *store.Data, killed map[string]bool) {
	for token, id := range c.callID {
		switch {
		case ev.starts[id] == 0:
			t.note(&t.lost, "lost: StartCall %s returned call %s, the log has no CALL_STARTED", token, id)
		case ev.startedBy[id] != token:
			t.note(&t.inconsistent, "call %s started as %q in the log, %q in the journal", id, ev.startedBy[id], token)
		}
	}
	acked := make(map[string]bool)
	for _, token := range c.acked {
		acked[token] = true
		t.checkAcked(token, c.callID[token], ev, final)
	}
	for _, id := range ev.order {
		t.checkLogged(id, c, ev, acked[ev.startedBy[id]], killed[owner(id)])
	}
	for _, f := range final.CallFrames {
		t.note(&t.inconsistent, "frame %s (%s) is left in the completed operation", f.CallID, f.State)
	}
	for id := range ev.crashed {
		if ev.starts[id] == 0 {
			t.gapOr(killed[owner(id)], "CRASH_DETECTED lists call %s, which has no CALL_STARTED", id)
		}
	}
	for id := range ev.ends {
		if ev.starts[id] == 0 {
			t.note(&t.inconsistent, "CALL_ENDED %s has no CALL_STARTED", id)
		}
	}
}

// checkAcked checks the call of an acknowledged End.
func (t *tally) checkAcked(token, id string, ev *events, final *store.Data) {
	switch n := ev.ends[id]; {
	case id == "":
		t.note(&t.inconsistent, "journal: %s acknowledged without a call id", token)
		return
	case n == 0:
		t.note(&t.lost, "lost: End of %s (%s) returned nil, the log has no CALL_ENDED", id, token)
	case n > 1:
		t.note(&t.doubled, "doubled: acknowledged call %s (%s) has %d CALL_ENDED", id, token, n)
	}
	if ev.crashed[id] > 0 {
		t.note(&t.doubled, "doubled: acknowledged call %s (%s) is also listed by CRASH_DETECTED", id, token)
	}
	if final.Frame(id) >= 0 {
		t.note(&t.lost, "lost: acknowledged call %s (%s) still has a frame", id, token)
	}
}

// checkLogged checks a call that has a CALL_STARTED line; checkAcked has
// counted the doubles of acknowledged calls. killed says its worker was
// killed.
func (t *tally) checkLogged(id string, c *calls, ev *events, acked, killed bool) {
	token := ev.startedBy[id]
	if n := ev.starts[id]; n > 1 {
		t.note(&t.doubled, "doubled: call id %s has %d CALL_STARTED", id, n)
	}
	if n := ev.tokens[token]; n > 1 {
		t.note(&t.doubled, "doubled: StartCall %s has %d CALL_STARTED", token, n)
		ev.tokens[token] = 1 // reported once
	}
	if !c.started[token] {
		t.note(&t.inconsistent, "CALL_STARTED %s (%q): no worker started it", id, token)
	}
	if ev.ends[id] > 0 && c.callID[token] != id {
		t.note(&t.inconsistent, "CALL_ENDED %s (%s): its worker never had the call to end it", id, token)
	}
	switch n := ev.ends[id] + ev.crashed[id]; {
	case n == 0:
		t.gapOr(killed, "call %s (%s) never ended: no CALL_ENDED, no CRASH_DETECTED", id, token)
	case n > 1 && !acked:
		t.note(&t.doubled, "doubled: call %s (%s) ended %d times (CALL_ENDED %d, CRASH_DETECTED %d)", id, token, n, ev.ends[id], ev.crashed[id])
	}
}

// kill is one SIGKILL of a worker.
type kill struct {
	id  string    // the participant id of the worker
	pid int       // its pid
	at  time.Time // when the signal was sent
}

// checkDetection checks the crash verdicts. A killed worker that had joined
// (it has a participant record) counts as detected when its record in the
// final state is crashed; the state is what participants act on. One
// CRASH_DETECTED line must name it too (or an orphan sweep must have
// declared everyone gone); if none does, a kill cut the line off its
// verdict: a gap. A verdict on any other participant is false. It returns
// the time from each kill to its verdict, how many killed workers had not
// joined, and the participant ids of the killed workers.
func (t *tally) checkDetection(kills []kill, ev *events, final *store.Data) (lat []time.Duration, unjoined int, ids map[string]bool) {
	keys, ids := make(map[string]bool), make(map[string]bool)
	for _, k := range kills {
		ids[k.id] = true
		i := participantIndex(final, k.id, k.pid)
		if i < 0 {
			unjoined++
			continue
		}
		p := final.Participants[i]
		key := p.Key()
		keys[key] = true
		switch n := ev.verdicts[key]; {
		case p.State != store.ParticipantCrashed:
			t.note(&t.undetected, "undetected: killed participant %s is %s in the final state", key, p.State)
		case n == 0 && !ev.sweep:
			t.gap("killed participant %s is crashed but no CRASH_DETECTED names it", key)
		case n > 1:
			t.note(&t.doubled, "doubled: participant %s declared crashed %d times", key, n)
		}
		if at, ok := ev.firstSeen[key]; ok {
			lat = append(lat, max(at.Sub(k.at), 0))
		}
	}
	for key := range ev.verdicts {
		if !keys[key] {
			t.note(&t.falseCrash, "false verdict: CRASH_DETECTED names %s, which was not killed", key)
		}
	}
	for _, p := range final.Participants {
		if p.State == store.ParticipantCrashed && !keys[p.Key()] && ev.verdicts[p.Key()] == 0 {
			t.note(&t.falseCrash, "false verdict: participant %s, not killed, is crashed", p.Key())
		}
		if p.ParticipantID != final.InitiatorID && ev.joins[p.ParticipantID] == 0 {
			t.gapOr(ids[p.ParticipantID], "participant %s has a record but no PARTICIPANT_JOINED", p.Key())
		}
	}
	return lat, unjoined, ids
}

func participantIndex(d *store.Data, id string, pid int) int {
	for i, p := range d.Participants {
		if p.ParticipantID == id && p.PID == pid {
			return i
		}
	}
	return -1
}

// checkStopped checks that the workers stopped at the end left.
func (t *tally) checkStopped(ids []string, final *store.Data) {
	for _, id := range ids {
		for _, p := range final.Participants {
			if p.ParticipantID == id && p.State != store.ParticipantLeft {
				t.note(&t.inconsistent, "worker %s closed its ledger but its record is %s", p.Key(), p.State)
			}
		}
	}
}

// summary gives the median, 99th percentile and maximum of ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(ds), pct(0.5).Round(time.Millisecond),
		pct(0.99).Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}
