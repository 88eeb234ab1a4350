package ledger

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

// HeartbeatResult is what one heartbeat saw.
type HeartbeatResult struct {
	AbortFlag         bool                     // the ledger's abort flag
	LedgerExists      bool                     // the operation is still live
	CallFrameCount    int                      // frames after the beat
	TempResourceCount int                      // temp resources after the beat
	HeartbeatAge      time.Duration            // age of this process's previous beat
	Participants      []string                 // "id/pid@host" of every active participant
	ParticipantAges   map[string]time.Duration // time since each was seen to beat
	StaleParticipants []string                 // participants past the stale threshold
	DataBefore        *Data                    // the state before the beat
	DataAfter         *Data                    // the state after the beat
}

// HeartbeatErrorType classifies a HeartbeatError.
type HeartbeatErrorType int

// Heartbeat error types, as in Dart.
const (
	HeartbeatLedgerNotFound HeartbeatErrorType = iota // the operation is gone
	HeartbeatLockFailed                               // the file lock could not be had
	HeartbeatAbortFlagSet                             // the abort flag is set (reported once)
	HeartbeatStale                                    // a participant is stale
	HeartbeatIOError                                  // any other failure
)

// String returns the Dart name of the type, such as "ledgerNotFound".
func (t HeartbeatErrorType) String() string {
	switch t {
	case HeartbeatLedgerNotFound:
		return "ledgerNotFound"
	case HeartbeatLockFailed:
		return "lockFailed"
	case HeartbeatAbortFlagSet:
		return "abortFlagSet"
	case HeartbeatStale:
		return "heartbeatStale"
	case HeartbeatIOError:
		return "ioError"
	}
	return "unknown"
}

// HeartbeatError is a heartbeat problem, delivered to OnHeartbeatError.
type HeartbeatError struct {
	Type    HeartbeatErrorType // what went wrong
	Message string             // what went wrong, for people
	Cause   error              // the underlying error, or nil
}

func (e *HeartbeatError) Error() string {
	msg := "ledger: heartbeat " + e.Type.String() + ": " + e.Message
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *HeartbeatError) Unwrap() error { return e.Cause }

// monitor keeps one operation alive in one process and watches the others:
// a heartbeat every HeartbeatInterval (with jitter) and, on the local
// backend, a liveness poll every LivenessPoll. Each read of the state
// (beat or poll) is judged the same way: abort, failure and completion are
// taken in, participants that stopped beating or whose liveness lock is
// free are reported crashed, and the coordinator of a failure finishes it.
//
// Staleness is judged on this process's monotonic clock, from the moment it
// last saw a participant's heartbeat change, so wall clocks that disagree
// between hosts never cause a verdict.
type monitor struct {
	st     *opState
	stop   chan struct{} // closed to stop the loop
	done   chan struct{} // closed when the loop has returned
	once   sync.Once     // guards close(stop)
	paused chan bool     // StartHeartbeat/StopHeartbeat
	notes  notifier

	mu           sync.Mutex // guards the fields below
	seen         map[string]seenBeat
	lastBeat     time.Time // monotonic time of this process's last beat
	cleanupSince time.Time // when the cleanup state was first seen
	abortSent    bool      // abortFlagSet reported
}

// seenBeat is the last heartbeat seen of a participant and when (on this
// process's monotonic clock) it was first seen with that value.
type seenBeat struct {
	beat store.Time
	at   time.Time
}

// startBackground starts the monitor of st; opState.end stops it.
func (st *opState) startBackground() {
	m := &monitor{
		st:     st,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		paused: make(chan bool),
		seen:   make(map[string]seenBeat),
	}
	m.notes.wake = make(chan struct{}, 1)
	st.mon = m
	st.c.goTracked(m.run)
	st.c.goTracked(func() { m.notes.run(st, m.stop) })
}

// halt stops the monitor; it is safe to call more than once and from the
// monitor itself.
func (m *monitor) halt() { m.once.Do(func() { close(m.stop) }) }

// stopped stops the monitor and waits for its loop to return, so that no
// beat of this process is written afterwards. The loop never runs user
// code, so a callback may call this. Not for the monitor itself.
func (st *opState) stopped() {
	if st.mon != nil {
		st.mon.halt()
		<-st.mon.done
	}
}

func (m *monitor) run() {
	defer close(m.done)
	o := m.st.c.opts
	beat := time.NewTimer(jitter(o.HeartbeatInterval))
	defer beat.Stop()
	var poll <-chan time.Time
	if _, ok := m.st.c.b.(livenessBackend); ok {
		t := time.NewTicker(o.LivenessPoll)
		defer t.Stop()
		poll = t.C
	}
	paused := false
	for {
		select {
		case <-m.stop:
			return
		case <-m.st.c.life.Done():
			return
		case paused = <-m.paused:
		case <-beat.C:
			if !paused {
				m.beat(m.st.c.life)
			}
			beat.Reset(jitter(o.HeartbeatInterval))
		case <-poll:
			m.poll(m.st.c.life)
		}
	}
}

// staleAfter is how long an observer waits for a participant's next beat
// before declaring it crashed: the threshold, plus the longest gap between
// two beats of a healthy participant (an interval, +10% jitter, and a
// margin for a slow write).
func staleAfter(o Options) time.Duration {
	return o.StaleThreshold + o.HeartbeatInterval + o.HeartbeatInterval/4
}

// jitter spreads d by ±10% so that participants do not beat in step.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// opCtx bounds one background ledger access: a lock that cannot be had
// within about one interval is reported, not waited for.
func (m *monitor) opCtx(parent context.Context) (context.Context, context.CancelFunc) {
	o := m.st.c.opts
	return context.WithTimeout(parent, min(o.LockTimeout, max(o.HeartbeatInterval, time.Second)))
}

// beat writes this process's heartbeat and judges what it read.
func (m *monitor) beat(parent context.Context) (HeartbeatResult, error) {
	st := m.st
	ctx, cancel := m.opCtx(parent)
	defer cancel()
	st.mu.Lock()
	before := st.data
	st.mu.Unlock()

	now := time.Now()
	m.mu.Lock()
	age := time.Duration(0)
	if !m.lastBeat.IsZero() {
		age = now.Sub(m.lastBeat)
	}
	m.lastBeat = now
	m.mu.Unlock()
	if age > st.c.opts.StaleThreshold {
		m.report(HeartbeatStale, "this process's own heartbeat was late by "+age.String(), nil)
	}

	d, err := st.c.b.heartbeat(ctx, st.id, st.c.who)
	if err != nil {
		return HeartbeatResult{LedgerExists: false, DataBefore: before.Clone(), HeartbeatAge: age}, m.beatFailed(ctx, err)
	}
	r := m.judge(ctx, d)
	r.HeartbeatAge = age
	r.DataBefore = before.Clone()
	r.DataAfter = r.DataAfter.Clone()
	m.notes.success(r)
	return r, nil
}

// beatFailed takes in a failed heartbeat: an operation that finished
// elsewhere is taken in; anything else is reported.
func (m *monitor) beatFailed(ctx context.Context, err error) error {
	st := m.st
	var failed *OperationFailedError
	switch {
	case errors.As(err, &failed):
		m.react(nil, &failed.Info)
		m.halt()
		return nil
	case errors.Is(err, ErrOperationCompleted):
		st.end(err)
		return nil
	case errors.Is(err, ErrOperationNotFound):
		return m.report(HeartbeatLedgerNotFound, "the operation is not in the ledger", err)
	case errors.Is(err, ErrLockTimeout):
		return m.report(HeartbeatLockFailed, "could not lock the ledger file", err)
	}
	return m.report(HeartbeatIOError, "heartbeat failed", err)
}

// poll reads the state and checks the liveness locks of the participants
// on this host.
func (m *monitor) poll(parent context.Context) {
	st := m.st
	ctx, cancel := m.opCtx(parent)
	defer cancel()
	d, err := st.c.b.state(ctx, st.id)
	if err != nil {
		return // the next beat reports it
	}
	if lb, ok := st.c.b.(livenessBackend); ok && d.OperationState != store.StateCompleted {
		for _, p := range d.Participants {
			if p.State != store.ParticipantActive || p.Host != st.c.who.Host || p.Key() == st.c.who.key() {
				continue
			}
			if lb.dead(st.id, participant{p.ParticipantID, p.PID, p.Host}) {
				if nd := m.crash(ctx, participant{p.ParticipantID, p.PID, p.Host}, store.Time{}); nd != nil {
					d = nd
				}
			}
		}
	}
	m.judge(ctx, d)
}

// judge takes in a state read from the ledger and returns what a heartbeat
// reports of it. Its DataAfter is d itself, shared with the store: a caller
// that hands the result out copies it first. (The liveness poll runs judge
// several times a second and needs no copy.)
func (m *monitor) judge(ctx context.Context, d *store.Data) HeartbeatResult {
	st, o, now := m.st, m.st.c.opts, time.Now()
	r := HeartbeatResult{
		AbortFlag:         d.Aborted,
		LedgerExists:      !d.Finished(),
		CallFrameCount:    len(d.CallFrames),
		TempResourceCount: len(d.TempResources),
		ParticipantAges:   make(map[string]time.Duration),
		DataAfter:         d, // shared: beat copies it, poll drops it
	}
	var stale []store.Participant
	m.mu.Lock()
	active := make(map[string]bool)
	for _, p := range d.Participants {
		if p.State != store.ParticipantActive {
			continue
		}
		k := p.Key()
		active[k] = true
		r.Participants = append(r.Participants, k)
		if k == st.c.who.key() {
			r.ParticipantAges[k] = now.Sub(m.lastBeat)
			continue
		}
		s, ok := m.seen[k]
		if !ok || !s.beat.Equal(p.LastHeartbeat.Time) {
			s = seenBeat{beat: p.LastHeartbeat, at: now}
			m.seen[k] = s
		}
		r.ParticipantAges[k] = now.Sub(s.at)
		if now.Sub(s.at) > staleAfter(o) {
			r.StaleParticipants = append(r.StaleParticipants, k)
			stale = append(stale, p)
		}
	}
	for k := range m.seen {
		if !active[k] {
			delete(m.seen, k)
		}
	}
	abortNew := d.Aborted && !m.abortSent
	if abortNew {
		m.abortSent = true
	}
	m.mu.Unlock()

	if abortNew {
		m.report(HeartbeatAbortFlagSet, "the abort flag is set", ErrAborted)
	}
	for _, p := range stale {
		m.report(HeartbeatStale, "participant "+p.Key()+" stopped beating", nil)
		if nd := m.crash(ctx, participant{p.ParticipantID, p.PID, p.Host}, p.LastHeartbeat); nd != nil {
			d = nd
		}
	}
	m.react(d, nil)
	if d.OperationState == store.StateCleanup {
		m.coordinate(ctx, d)
	}
	if d.Finished() {
		m.halt()
	}
	return r
}

// crash reports victim crashed and, if this process became the
// coordinator, deletes the victim's temp resources on this host. It
// returns the new state, or nil if nothing changed.
func (m *monitor) crash(ctx context.Context, victim participant, seen store.Time) *store.Data {
	rep, err := m.st.c.b.reportCrash(ctx, m.st.id, m.st.c.who, victim, seen)
	if err != nil || !rep.Crashed {
		return nil
	}
	for _, path := range rep.Temps {
		os.RemoveAll(path)
	}
	return rep.Data
}

// react takes in abort, failure and completion through the path every
// discoverer uses (opState.observe, opState.fail), whose callbacks run on
// goroutines of their own, so that a slow one never delays a beat.
func (m *monitor) react(d *store.Data, failure *OperationFailedInfo) {
	if d != nil {
		m.st.observe(d)
	}
	if failure != nil {
		m.st.fail(*failure)
	}
}

// coordinate finishes the cleanup phase of a failed operation: the
// coordinator does it once every frame is cleaned up, or after two
// heartbeat intervals; anyone does it when the coordinator is gone, or has
// not done it a stale threshold later.
func (m *monitor) coordinate(ctx context.Context, d *store.Data) {
	st, o, now := m.st, m.st.c.opts, time.Now()
	m.mu.Lock()
	if m.cleanupSince.IsZero() {
		m.cleanupSince = now
	}
	waited := now.Sub(m.cleanupSince)
	m.mu.Unlock()

	window := 2 * o.HeartbeatInterval
	coordinator := ""
	if d.Failure != nil {
		coordinator = d.Failure.Coordinator
	}
	busy := slices.ContainsFunc(d.CallFrames, func(f store.CallFrame) bool {
		return f.State == store.FrameActive || f.State == store.FrameCleaningUp
	})
	var due bool
	switch {
	case coordinator == st.c.who.key():
		due = !busy || waited >= window
	case !activeParticipant(d, coordinator):
		due = waited >= window
	default:
		due = waited >= window+o.StaleThreshold
	}
	if !due {
		return
	}
	if nd, err := st.c.b.finishCleanup(ctx, st.id, st.c.who); err == nil {
		m.react(nd, nil)
		if nd.Finished() {
			m.halt()
		}
	}
}

// activeParticipant reports whether the participant with Key k is active.
func activeParticipant(d *store.Data, k string) bool {
	return slices.ContainsFunc(d.Participants, func(p store.Participant) bool {
		return p.Key() == k && p.State == store.ParticipantActive
	})
}

// report queues a heartbeat error for the callbacks and returns it.
func (m *monitor) report(t HeartbeatErrorType, msg string, cause error) error {
	err := &HeartbeatError{Type: t, Message: msg, Cause: cause}
	m.notes.failure(err)
	return err
}

// notifier hands heartbeat events to the callbacks on its own goroutine.
// Successes are coalesced to the latest; errors queue up to a bound, past
// which the oldest are dropped. The monitor never waits for a callback.
type notifier struct {
	wake chan struct{} // one pending wake-up

	mu     sync.Mutex // guards latest, errs
	latest *HeartbeatResult
	errs   []*HeartbeatError
}

const maxQueuedHeartbeatErrors = 64

func (n *notifier) success(r HeartbeatResult) {
	n.mu.Lock()
	n.latest = &r
	n.mu.Unlock()
	n.poke()
}

func (n *notifier) failure(err *HeartbeatError) {
	n.mu.Lock()
	if len(n.errs) == maxQueuedHeartbeatErrors {
		n.errs = n.errs[1:]
	}
	n.errs = append(n.errs, err)
	n.mu.Unlock()
	n.poke()
}

func (n *notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run(st *opState, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-st.c.life.Done():
			return
		case <-n.wake:
		}
		n.mu.Lock()
		latest, errs := n.latest, n.errs
		n.latest, n.errs = nil, nil
		n.mu.Unlock()
		sessions := st.sessionList()
		for _, err := range errs {
			if f := st.c.opts.Callback.OnGlobalHeartbeatError; f != nil {
				f(st.id, err)
			}
			for _, op := range sessions {
				if op.cb.OnHeartbeatError != nil {
					op.cb.OnHeartbeatError(op, err)
				}
			}
		}
		if latest != nil {
			for _, op := range sessions {
				if op.cb.OnHeartbeatSuccess != nil {
					op.cb.OnHeartbeatSuccess(op, *latest)
				}
			}
		}
	}
}

// Heartbeat does one heartbeat now, besides the automatic ones, and returns
// what it saw. The callbacks of the sessions run as for any beat.
func (op *Operation) Heartbeat(ctx context.Context) (HeartbeatResult, error) {
	if err := op.usable(); err != nil {
		return HeartbeatResult{}, err
	}
	return op.st.mon.beat(ctx)
}

// StopHeartbeat pauses the automatic heartbeats of this process on the
// operation (for every session). Other participants will declare it
// crashed once its heartbeat is older than their stale threshold.
func (op *Operation) StopHeartbeat() { op.st.mon.setPaused(true) }

// StartHeartbeat resumes automatic heartbeats after StopHeartbeat. They run
// from the start of the operation; calling it otherwise has no effect.
func (op *Operation) StartHeartbeat() { op.st.mon.setPaused(false) }

func (m *monitor) setPaused(p bool) {
	select {
	case m.paused <- p:
	case <-m.stop:
	}
}
