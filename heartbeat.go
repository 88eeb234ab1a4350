package ledger

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
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
// On the local backend a heartbeat is two things: a touch of this
// process's liveness file, which needs no lock of the operation and is
// done by a goroutine of its own, and the ledger write, whose lock wait may
// take as long as call traffic makes it. Observers on the same host count
// either as a beat, so a busy lock never makes a live process stale.
//
// Staleness is judged on this process's monotonic clock, from the moment it
// last saw a participant's heartbeat (or liveness file) change, so wall
// clocks that disagree between hosts never cause a verdict.
type monitor struct {
	st     *opState
	stop   chan struct{} // closed to stop the loop
	done   chan struct{} // closed when the loop has returned
	once   sync.Once     // guards close(stop)
	paused atomic.Bool   // StopHeartbeat: neither beats nor touches
	notes  notifier

	mu           sync.Mutex // guards the fields below
	seen         map[string]seenBeat
	lastBeat     time.Time // monotonic time of this process's last beat
	cleanupSince time.Time // when the cleanup state was first seen
	abortSent    bool      // abortFlagSet reported
}

// seenBeat is the last heartbeat and liveness file time seen of a
// participant and when (on this process's monotonic clock) either was
// first seen with its value.
type seenBeat struct {
	beat  store.Time
	touch time.Time // zero for a participant without a liveness file here
	at    time.Time
}

// startBackground starts the monitor of st; opState.end stops it.
func (st *opState) startBackground() {
	m := &monitor{
		st:   st,
		stop: make(chan struct{}),
		done: make(chan struct{}),
		seen: make(map[string]seenBeat),
	}
	m.notes.wake = make(chan struct{}, 1)
	st.mon = m
	st.c.goTracked(m.run)
	st.c.goTracked(func() { m.notes.run(st, m.stop) })
	if st.live != nil {
		st.c.goTracked(m.touchLoop)
	}
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
	for {
		select {
		case <-m.stop:
			return
		case <-m.st.c.life.Done():
			return
		case <-beat.C:
			if !m.paused.Load() {
				m.beat(m.st.c.life)
			}
			beat.Reset(jitter(o.HeartbeatInterval))
		case <-poll:
			m.poll(m.st.c.life)
		}
	}
}

// touchLoop touches this process's liveness file every HeartbeatInterval
// (with jitter) while beats are not paused. It never waits for the ledger,
// so however long a ledger heartbeat waits for the operation's lock,
// observers on this host keep seeing this process beat.
func (m *monitor) touchLoop() {
	o := m.st.c.opts
	t := time.NewTimer(jitter(o.HeartbeatInterval))
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.st.c.life.Done():
			return
		case <-t.C:
			if !m.paused.Load() {
				m.touch()
			}
			t.Reset(jitter(o.HeartbeatInterval))
		}
	}
}

// touch sets the time of this process's liveness file, if it has one.
func (m *monitor) touch() {
	if live := m.st.live; live != nil {
		if err := live.Touch(); err != nil {
			m.report(HeartbeatIOError, "could not touch the liveness file", err)
		}
	}
}

// staleAfter is how long an observer waits for a participant's next beat
// before declaring it crashed: the participant's own threshold, plus the
// longest gap between two beats of it while healthy (its interval, +10%
// jitter, and a margin for a slow write). Each participant is judged by
// the settings in its own record, never by the observer's.
func staleAfter(p *store.Participant) time.Duration {
	interval, stale := settingsOf(p)
	return stale + interval + interval/4
}

// settingsOf returns the heartbeat settings of a participant record; a
// record without them (the Dart ledger writes none) has the defaults.
func settingsOf(p *store.Participant) (interval, stale time.Duration) {
	return recordedMs(p.HeartbeatIntervalMs, DefaultHeartbeatInterval), recordedMs(p.StaleThresholdMs, DefaultStaleThreshold)
}

// maxRecordedMs bounds a recorded setting, so that sums of durations made
// from a file's numbers cannot overflow (2^40 ms is about 35 years).
const maxRecordedMs = 1 << 40

func recordedMs(ms int, def time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return time.Duration(min(ms, maxRecordedMs)) * time.Millisecond
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
	m.touch()

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

// poll reads the state and judges it; judge checks the liveness files of
// the participants on this host.
func (m *monitor) poll(parent context.Context) {
	st := m.st
	ctx, cancel := m.opCtx(parent)
	defer cancel()
	d, err := st.c.b.state(ctx, st.id)
	if err != nil {
		return // the next beat reports it
	}
	m.judge(ctx, d)
}

// probeLiveness looks at the liveness files of the other active
// participants of d on this host (on the local backend): it returns those
// whose lock is free, which are gone, and the time of the last touch of the
// others, by Key.
func (m *monitor) probeLiveness(d *store.Data) (dead []participant, touched map[string]time.Time) {
	lb, ok := m.st.c.b.(livenessBackend)
	if !ok || d.OperationState == store.StateCompleted {
		return nil, nil
	}
	who := m.st.c.who
	for i := range d.Participants {
		p := &d.Participants[i]
		if p.State != store.ParticipantActive || p.Host != who.Host || p.Key() == who.key() {
			continue
		}
		switch pr := lb.probe(m.st.id, participantOf(p)); {
		case pr.Dead:
			dead = append(dead, participantOf(p))
		case pr.Exists:
			if touched == nil {
				touched = make(map[string]time.Time)
			}
			touched[p.Key()] = pr.Beat
		}
	}
	return dead, touched
}

// judge takes in a state read from the ledger and returns what a heartbeat
// reports of it. Its DataAfter is d itself, shared with the store: a caller
// that hands the result out copies it first. (The liveness poll runs judge
// several times a second and needs no copy.)
func (m *monitor) judge(ctx context.Context, d *store.Data) HeartbeatResult {
	dead, touched := m.probeLiveness(d)
	for _, p := range dead {
		if nd := m.crash(ctx, p, store.Time{}); nd != nil {
			d = nd
		}
	}
	st, now := m.st, time.Now()
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
		touch, local := touched[k]
		at := m.lastSeen(k, &p, touch, local, now)
		r.ParticipantAges[k] = now.Sub(at)
		if now.Sub(at) > staleAfter(&p) {
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
		if nd := m.crash(ctx, participantOf(&p), p.LastHeartbeat); nd != nil {
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

// lastSeen returns when this process first saw the participant p (Key k)
// as it is now: with its current heartbeat and, if local, with touch as
// the time of its liveness file. m.mu is held.
func (m *monitor) lastSeen(k string, p *store.Participant, touch time.Time, local bool, now time.Time) time.Time {
	s, ok := m.seen[k]
	if ok && s.beat.Equal(p.LastHeartbeat.Time) && (!local || touch.Equal(s.touch)) {
		return s.at
	}
	if !local {
		touch = s.touch
	}
	m.seen[k] = seenBeat{beat: p.LastHeartbeat, touch: touch, at: now}
	return now
}

// crash reports victim crashed and, if this process became the
// coordinator, deletes the victim's temp resources that the rule allows
// (see tempCleaner: on the local backend only). It returns the new state,
// or nil if nothing changed.
func (m *monitor) crash(ctx context.Context, victim participant, seen store.Time) *store.Data {
	temps := m.st.c.temps()
	paths := temps.collect(m.st.id, victim) // before the report archives them
	rep, err := m.st.c.b.reportCrash(ctx, m.st.id, m.st.c.who, victim, seen)
	if err != nil || !rep.Crashed {
		return nil
	}
	temps.remove(m.st.id, victim, paths)
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
// operation (for every session), the touches of its liveness file
// included. Other participants will declare it crashed once its heartbeat
// is older than its stale threshold.
func (op *Operation) StopHeartbeat() { op.st.mon.setPaused(true) }

// StartHeartbeat resumes automatic heartbeats after StopHeartbeat. They run
// from the start of the operation; calling it otherwise has no effect.
func (op *Operation) StartHeartbeat() { op.st.mon.setPaused(false) }

func (m *monitor) setPaused(p bool) { m.paused.Store(p) }
