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
	"github.com/tomdist/ledger/journal"
)

// monitor keeps one operation alive in one process and watches the
// others. It is woken, not timed: by the backend's watch when the journal
// grows (abort, failure, completion, a verdict), by the end of the lease
// of a participant on this host (its process died: seen when it happens),
// and by its own heartbeat every HeartbeatInterval, which proves this
// process alive and reads the vitals of the others, to find those that
// stopped beating. With nothing happening it reads nothing but the
// vitals, once per interval.
//
// Staleness is judged on this process's monotonic clock, from the moment
// it last saw a participant's beat change, against that participant's own
// threshold, so wall clocks that disagree between hosts, and settings
// that differ between participants, never cause a verdict.
type monitor struct {
	st     *opState
	stop   chan struct{} // closed to stop the loop
	done   chan struct{} // closed when the loop has returned
	read   chan struct{} // closed when the loop has read the operation once
	once   sync.Once     // guards close(stop)
	paused atomic.Bool   // StopHeartbeat: no beats
	beats  chan beatReq  // Operation.Heartbeat
	gone   chan participant
	notes  notifier

	// Owned by the loop.
	watching  map[string]context.CancelFunc // participants whose lease is observed, by key
	observers sync.WaitGroup

	mu           sync.Mutex // guards the fields below
	seen         map[string]seenBeat
	lastBeat     time.Time // monotonic time of this process's last beat
	cleanupSince time.Time // when the cleanup state was first seen
	abortSent    bool      // abortFlagSet reported
}

// seenBeat is the last heartbeat seen of a participant, in its record and
// in its vital, and when (on this process's monotonic clock) either was
// first seen with its value. The two are compared each with itself only:
// they come from different clocks (the participant's, the store's).
type seenBeat struct {
	record time.Time
	vital  time.Time
	at     time.Time
}

// startBackground starts the monitor of st; opState.end stops it.
func (st *opState) startBackground() {
	m := &monitor{
		st:       st,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		read:     make(chan struct{}),
		beats:    make(chan beatReq),
		gone:     make(chan participant, 16),
		seen:     make(map[string]seenBeat),
		watching: make(map[string]context.CancelFunc),
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
	ctx, cancel := context.WithCancel(m.st.c.life)
	defer cancel()
	defer m.unobserveAll()
	wake, err := m.st.c.b.watchLoud(ctx, m.st.id)
	if err != nil {
		m.report(HeartbeatIOError, "cannot watch the operation", err)
	}
	if watched := wake; watched != nil {
		defer func() {
			// The watch ends with ctx; wait for it to close its channel.
			cancel()
			for range watched {
			}
		}()
	}
	beat := time.NewTimer(jitter(o.HeartbeatInterval))
	defer beat.Stop()
	coord := time.NewTimer(time.Hour)
	coord.Stop()
	defer coord.Stop()
	m.catchUp(ctx, coord)
	close(m.read)
	for {
		select {
		case <-m.stop:
			return
		case <-ctx.Done():
			return
		case req := <-m.beats:
			r, err := m.beat(req.ctx, coord)
			req.reply <- beatReply{r, err}
		case _, ok := <-wake:
			if !ok {
				wake = nil
				continue
			}
			m.catchUp(ctx, coord)
		case p := <-m.gone:
			m.leaseEnded(ctx, p, coord)
		case <-coord.C:
			v, _ := m.st.wholeView() // corruption: the next beat reports it
			m.coordinate(ctx, v.d, coord)
		case <-beat.C:
			if !m.paused.Load() {
				m.beat(ctx, coord)
			}
			beat.Reset(jitter(o.HeartbeatInterval))
		}
	}
}

// beatReq asks the loop for a heartbeat now (Operation.Heartbeat).
type beatReq struct {
	ctx   context.Context
	reply chan beatReply
}

type beatReply struct {
	r   HeartbeatResult
	err error
}

// beatNow has the loop beat now and returns what the beat saw.
func (m *monitor) beatNow(ctx context.Context) (HeartbeatResult, error) {
	req := beatReq{ctx: ctx, reply: make(chan beatReply, 1)}
	select {
	case m.beats <- req:
	case <-m.done:
		return HeartbeatResult{}, ErrClosed
	case <-ctx.Done():
		return HeartbeatResult{}, context.Cause(ctx)
	}
	rep := <-req.reply
	return rep.r, rep.err
}

// staleAfter is how long an observer waits for a participant's next beat
// before declaring it crashed: its threshold, plus the longest gap between
// two beats of a healthy participant (an interval, +10% jitter, and a
// margin for a slow write).
func staleAfter(interval, threshold time.Duration) time.Duration {
	return threshold + interval + interval/4
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

// catchUp reads what the journal gained since this process's view and
// takes it in.
func (m *monitor) catchUp(parent context.Context, coord *time.Timer) {
	ctx, cancel := m.opCtx(parent)
	defer cancel()
	st := m.st
	v, err := st.c.b.read(ctx, st.id, st.view())
	if err != nil {
		return // the next beat reports it
	}
	st.mu.Lock()
	st.see(v)
	st.mu.Unlock()
	m.take(ctx, st.view(), coord)
}

// take judges a view: abort, failure and completion are taken in, the
// leases of the participants on this host are observed, and the
// coordinator of a failure finishes it.
func (m *monitor) take(ctx context.Context, v view, coord *time.Timer) {
	d := v.d
	if d == nil {
		return
	}
	m.react(&v, nil)
	m.observeLeases(d)
	if d.OperationState == store.StateCleanup {
		m.coordinate(ctx, d, coord)
	}
	if d.Finished() || v.done {
		m.halt()
	}
}

// observeLeases starts observing the lease of every active participant
// that holds one this process can see, and stops observing those that
// are no longer active.
func (m *monitor) observeLeases(d *store.Data) {
	lb, ok := m.st.c.b.(leaseBackend)
	if !ok {
		return
	}
	active := make(map[string]bool)
	for i := range d.Participants {
		p := &d.Participants[i]
		k := p.Key()
		if p.State != store.ParticipantActive || k == m.st.c.who.key() || p.Remote {
			continue
		}
		active[k] = true
		if _, ok := m.watching[k]; ok {
			continue
		}
		who := participant{ID: p.ParticipantID, PID: p.PID, Host: p.Host}
		ctx, cancel := context.WithCancel(m.st.c.life)
		ch, err := lb.observe(ctx, m.st.id, who)
		if err != nil {
			cancel()
			m.watching[k] = func() {} // not observable: its beats tell
			continue
		}
		m.watching[k] = cancel
		m.observers.Go(func() {
			select {
			case <-ch:
				select {
				case m.gone <- who:
				case <-ctx.Done():
				}
			case <-ctx.Done():
			}
		})
	}
	for k, cancel := range m.watching {
		if !active[k] {
			cancel()
			delete(m.watching, k)
		}
	}
}

func (m *monitor) unobserveAll() {
	for k, cancel := range m.watching {
		cancel()
		delete(m.watching, k)
	}
	m.observers.Wait()
}

// leaseEnded takes in the end of the lease of p: a process that is gone.
// If it is still active in the ledger (it did not leave), it crashed.
func (m *monitor) leaseEnded(parent context.Context, p participant, coord *time.Timer) {
	delete(m.watching, p.key())
	ctx, cancel := m.opCtx(parent)
	defer cancel()
	m.crash(ctx, p, store.Time{}, coord)
}

// beat proves this process alive, reads the vitals of the others and
// judges who stopped beating.
func (m *monitor) beat(parent context.Context, coord *time.Timer) (HeartbeatResult, error) {
	st := m.st
	ctx, cancel := m.opCtx(parent)
	defer cancel()
	before, _ := st.wholeView() // corruption: reported after the beat

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

	vitals, v, err := st.c.b.heartbeat(ctx, st.id, st.c.who, st.lease, before)
	if err != nil {
		return HeartbeatResult{LedgerExists: false, DataBefore: dataOf(before.d), HeartbeatAge: age}, m.beatFailed(err)
	}
	st.mu.Lock()
	st.see(v)
	after, err := st.wholeViewLocked()
	st.mu.Unlock()
	if err != nil {
		return HeartbeatResult{LedgerExists: true, DataBefore: dataOf(before.d), HeartbeatAge: age}, m.beatFailed(err)
	}
	r := m.judge(ctx, after.d, vitals, coord)
	m.take(ctx, st.view(), coord)
	r.HeartbeatAge = age
	r.DataBefore = dataOf(before.d)
	r.DataAfter = dataOf(withBeats(after.d, vitals))
	m.notes.success(r)
	return r, nil
}

// beatFailed takes in a failed heartbeat: an operation that finished
// elsewhere is taken in; anything else is reported.
func (m *monitor) beatFailed(err error) error {
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

// judge finds the participants that stopped beating, reports them crashed
// and returns what a heartbeat reports of d. A participant's beat is the
// later of its record and its vital; its threshold is its own.
func (m *monitor) judge(ctx context.Context, d *store.Data, vitals []journal.Vital, coord *time.Timer) HeartbeatResult {
	st, now := m.st, time.Now()
	r := HeartbeatResult{
		AbortFlag:         d.Aborted,
		LedgerExists:      !d.Finished(),
		CallFrameCount:    len(d.CallFrames),
		TempResourceCount: len(d.TempResources),
		ParticipantAges:   make(map[string]time.Duration),
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
		cur := seenBeat{record: p.LastHeartbeat.Time, at: now}
		if v := vitalOf(vitals, &p); v != nil {
			cur.vital = v.Beat
		}
		s, ok := m.seen[k]
		if !ok || !s.record.Equal(cur.record) || !s.vital.Equal(cur.vital) {
			s = cur
			m.seen[k] = s
		}
		r.ParticipantAges[k] = now.Sub(s.at)
		interval, threshold := settingsOf(&p)
		if now.Sub(s.at) > staleAfter(interval, threshold) {
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
		m.crash(ctx, participant{ID: p.ParticipantID, PID: p.PID, Host: p.Host}, p.LastHeartbeat, coord)
	}
	return r
}

// settingsOf returns the heartbeat interval and stale threshold of a
// participant: its own, as its record says, or the defaults for records
// without them (as the Dart ledger writes).
func settingsOf(p *store.Participant) (interval, threshold time.Duration) {
	interval, threshold = DefaultHeartbeatInterval, DefaultStaleThreshold
	if p.HeartbeatIntervalMs > 0 {
		interval = time.Duration(p.HeartbeatIntervalMs) * time.Millisecond
	}
	if p.StaleThresholdMs > 0 {
		threshold = time.Duration(p.StaleThresholdMs) * time.Millisecond
	}
	return interval, threshold
}

// crash reports victim crashed and, if this process declared it,
// deletes the victim's temp resources that the rule allows (see
// tempCleaner: on a LocalLedger only), then takes in the new state.
func (m *monitor) crash(ctx context.Context, victim participant, seen store.Time, coord *time.Timer) {
	temps := m.st.c.temps()
	paths := temps.collect(m.st.id, victim) // before the report archives them
	v, out, err := m.st.apply(ctx, crashOp{who: m.st.c.who, victim: victim, seen: seen})
	if err != nil {
		return
	}
	if out.crashed {
		how := "stale"
		if seen.IsZero() {
			how = "lease ended"
		}
		logVerdict(m.st.c.opts.Logger, m.st.id, victim, how)
		temps.remove(m.st.id, victim, paths)
	}
	m.take(ctx, v, coord)
}

// react takes in abort, failure and completion, through the one path
// that delivers them (observe, fail): callbacks run on goroutines of their
// own, so that a slow one never delays the monitor.
func (m *monitor) react(v *view, failure *OperationFailedInfo) {
	if v != nil {
		m.st.observe(*v)
	}
	if failure != nil {
		m.st.fail(*failure)
	}
}

// coordinate finishes the cleanup phase of a failed operation: the
// coordinator does it once every frame is cleaned up, or after two
// heartbeat intervals; anyone does it when the coordinator is gone, or has
// not done it a stale threshold later. When it is not due yet, coord is
// set for when it will be.
func (m *monitor) coordinate(ctx context.Context, d *store.Data, coord *time.Timer) {
	if d == nil || d.OperationState != store.StateCleanup {
		return
	}
	st, o, now := m.st, m.st.c.opts, time.Now()
	m.mu.Lock()
	if m.cleanupSince.IsZero() {
		m.cleanupSince = now
	}
	since := m.cleanupSince
	m.mu.Unlock()

	window := 2 * o.HeartbeatInterval
	coordinator := ""
	if d.Failure != nil {
		coordinator = d.Failure.Coordinator
	}
	busy := slices.ContainsFunc(d.CallFrames, func(f store.CallFrame) bool {
		return f.State == store.FrameActive || f.State == store.FrameCleaningUp
	})
	var due time.Time
	switch {
	case coordinator == st.c.who.key() && !busy:
		due = now
	case coordinator == st.c.who.key(), !activeParticipant(d, coordinator):
		due = since.Add(window)
	default:
		due = since.Add(window + o.StaleThreshold)
	}
	if now.Before(due) {
		coord.Reset(due.Sub(now))
		return
	}
	if v, _, err := st.apply(ctx, finishCleanupOp{who: st.c.who}); err == nil {
		m.take(ctx, v, coord)
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
	logHeartbeatError(m.st.c.opts.Logger, m.st.id, err)
	m.notes.failure(err)
	return err
}
