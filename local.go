package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
)

// LocalLedger is a ledger over a directory on this machine: flock-guarded
// JSON files that any number of processes may share. It implements Ledger.
type LocalLedger struct {
	*client
	store *store.Store
}

// NewLocalLedger opens the ledger directory o.BasePath, creating it if
// needed.
func NewLocalLedger(o Options) (*LocalLedger, error) {
	if o.BasePath == "" {
		return nil, fmt.Errorf("ledger: Options.BasePath is empty")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(o.BasePath, storeOptions(o))
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", o.BasePath, err)
	}
	l := &LocalLedger{store: st}
	b := &localBackend{st: st, temps: newTempCleaner(st, o)}
	l.client = newClient(o, b)
	l.goTracked(func() { b.sweepLoop(l.life, l.who, o.StaleThreshold) })
	return l, nil
}

func storeOptions(o Options) store.Options {
	return store.Options{
		Durable:         o.Durable,
		MaxTrail:        o.MaxTrail,
		TrailInterval:   o.HeartbeatInterval,
		MaxBackups:      o.MaxBackups,
		OnLogLine:       o.Callback.OnLogLine,
		OnBackupCreated: o.Callback.OnBackupCreated,
	}
}

// temps returns what deletes the temp resources of dead processes for
// the client: a LocalLedger's tempCleaner, or nil.
func (c *client) temps() *tempCleaner {
	if b, ok := c.b.(*localBackend); ok {
		return b.temps
	}
	return nil
}

// BasePath returns the ledger directory.
func (l *LocalLedger) BasePath() string { return l.store.Dir() }

// localBackend implements backend over a store. The ledger server uses it
// too, so the rules of every change live here once.
type localBackend struct {
	st *store.Store
	// temps deletes the temp resources of dead processes that the orphan
	// sweep finds; nil for the ledger server, which deletes none.
	temps *tempCleaner
}

func (b *localBackend) close() error { return b.st.Close() }

// finished turns the state of a finished operation into its error.
func finished(d *store.Data) error {
	switch d.OperationState {
	case store.StateCompleted:
		return fmt.Errorf("%w: %s", ErrOperationCompleted, d.OperationID)
	case store.StateFailed:
		return &OperationFailedError{Info: failureInfo(d)}
	}
	return nil
}

// update runs fn on a live operation; a finished (archived) one is reported
// as completed or failed rather than not found.
func (b *localBackend) update(ctx context.Context, id string, fn func(tx *store.Tx) error) (*store.Data, error) {
	d, err := b.st.Update(ctx, id, func(tx *store.Tx) error {
		if err := finished(tx.Data); err != nil {
			return err
		}
		return fn(tx)
	})
	if err != nil && errors.Is(err, store.ErrNotFound) {
		if old, rerr := b.st.Read(id); rerr == nil {
			if ferr := finished(old); ferr != nil {
				return nil, ferr
			}
		}
	}
	return d, err
}

func (b *localBackend) create(ctx context.Context, id string, who participant, description string) (*store.Data, error) {
	now := store.Now()
	d := &store.Data{
		OperationID:    id,
		InitiatorID:    who.ID,
		Description:    description,
		StartTime:      now,
		OperationState: store.StateRunning,
		LastHeartbeat:  now,
		CallFrames:     []store.CallFrame{},
		TempResources:  []store.TempResource{},
		Participants: []store.Participant{{
			ParticipantID: who.ID, PID: who.PID, Host: who.Host, Sessions: 1,
			JoinedAt: now, LastHeartbeat: now, State: store.ParticipantActive,
			HeartbeatIntervalMs: ms(who.Interval), StaleThresholdMs: ms(who.Stale),
		}},
	}
	err := b.st.Create(ctx, d, func(tx *store.Tx) {
		tx.Log("INFO", who.ID, "OPERATION_CREATED "+description)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (b *localBackend) join(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		d, now := tx.Data, store.Now()
		i := d.Participant(who.ID, who.Host, who.PID)
		if i < 0 {
			d.Participants = append(d.Participants, store.Participant{
				ParticipantID: who.ID, PID: who.PID, Host: who.Host, JoinedAt: now,
			})
			i = len(d.Participants) - 1
		}
		p := &d.Participants[i]
		p.Sessions++
		p.State = store.ParticipantActive
		p.LastHeartbeat = now
		p.HeartbeatIntervalMs, p.StaleThresholdMs = ms(who.Interval), ms(who.Stale)
		tx.Log("INFO", who.ID, fmt.Sprintf("PARTICIPANT_JOINED pid=%d host=%s session=%d", who.PID, who.Host, p.Sessions))
		return nil
	})
}

// ms is a duration as a participant record holds it: whole milliseconds,
// rounded up so that a setting below 1ms is not taken for absent.
func ms(d time.Duration) int {
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

func (b *localBackend) leave(ctx context.Context, id string, who participant) error {
	_, err := b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		i := d.Participant(who.ID, who.Host, who.PID)
		if i < 0 {
			return store.ErrNoChange
		}
		p := &d.Participants[i]
		p.Sessions = max(p.Sessions-1, 0)
		if p.Sessions == 0 {
			p.State = store.ParticipantLeft
			tx.Log("INFO", who.ID, fmt.Sprintf("PARTICIPANT_LEFT pid=%d", who.PID))
		}
		return nil
	})
	return err
}

func (b *localBackend) complete(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		if d.InitiatorID != who.ID {
			return fmt.Errorf("%w: %s is not %s", ErrNotInitiator, who.ID, d.InitiatorID)
		}
		if d.OperationState != store.StateRunning {
			return &OperationFailedError{Info: failureInfo(d)} // failing: cannot complete
		}
		d.OperationState = store.StateCompleted
		d.LastHeartbeat = store.Now()
		tx.Log("INFO", who.ID, "OPERATION_COMPLETED")
		return nil
	})
}

func (b *localBackend) state(ctx context.Context, id string) (*store.Data, error) {
	return b.st.Read(id)
}

func (b *localBackend) log(ctx context.Context, id string, who participant, level LogLevel, msg string) error {
	err := b.st.Log(ctx, id, level.String(), who.ID, msg)
	if errors.Is(err, store.ErrNotFound) {
		// As in update: an archived operation says how it ended.
		if old, rerr := b.st.Read(id); rerr == nil {
			if ferr := finished(old); ferr != nil {
				return ferr
			}
		}
	}
	return err
}

func (b *localBackend) setAbort(ctx context.Context, id string, who participant, aborted bool) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		if tx.Data.Aborted == aborted {
			return store.ErrNoChange
		}
		tx.Data.Aborted = aborted
		tx.Log("WARNING", who.ID, fmt.Sprintf("ABORT_SET %t", aborted))
		return nil
	})
}

func (b *localBackend) addFrame(ctx context.Context, id string, who participant, f frameSpec) error {
	_, err := b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		if d.OperationState != store.StateRunning {
			return &OperationFailedError{Info: failureInfo(d)}
		}
		if d.Frame(f.CallID) >= 0 {
			return fmt.Errorf("%w: %s", ErrCallExists, f.CallID)
		}
		now := store.Now()
		d.CallFrames = append(d.CallFrames, store.CallFrame{
			ParticipantID: who.ID, CallID: f.CallID, PID: who.PID, Host: who.Host,
			StartTime: now, LastHeartbeat: now, State: store.FrameActive,
			Description: f.Description, FailOnCrash: f.FailOnCrash,
		})
		switch f.Kind {
		case frameCall:
			tx.Log("INFO", who.ID, "CALL_STARTED "+f.CallID+" "+f.Description)
		case frameSpawned:
			tx.Log("INFO", who.ID, "CALL_SPAWNED "+f.CallID+" "+f.Description)
		}
		return nil
	})
	return err
}

func (b *localBackend) removeFrame(ctx context.Context, id string, who participant, callID string, kind frameKind) error {
	_, err := b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		i := d.Frame(callID)
		if i < 0 {
			return fmt.Errorf("%w: no frame %s", ErrCallNotFound, callID)
		}
		d.CallFrames = slices.Delete(d.CallFrames, i, i+1)
		switch kind {
		case frameCall:
			tx.Log("INFO", who.ID, "CALL_ENDED "+callID)
		case frameSpawned:
			tx.Log("INFO", who.ID, "CALL_COMPLETED "+callID)
		}
		return nil
	})
	return err
}

func (b *localBackend) failFrame(ctx context.Context, id string, who participant, callID, reason, stack string) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		i := d.Frame(callID)
		if i < 0 {
			return fmt.Errorf("%w: no frame %s", ErrCallNotFound, callID)
		}
		failOnCrash := d.CallFrames[i].FailOnCrash
		d.CallFrames = slices.Delete(d.CallFrames, i, i+1)
		tx.Log("ERROR", who.ID, "CALL_FAILED "+callID+" "+reason)
		if stack != "" {
			tx.Log("DEBUG", who.ID, "CALL_FAILED "+callID+" stack: "+stack)
		}
		if failOnCrash && d.OperationState == store.StateRunning {
			recordFailure(tx, who, who.ID, reason, []string{callID})
		}
		return nil
	})
}

// recordFailure marks a running operation as failed: the calls callIDs of
// participant culprit failed or crashed, and coordinator (a participant
// Key) takes charge of the cleanup. When frames of other calls are still
// active, their participants must clean up first: the operation goes to
// cleanup and the coordinator finishes it later. Otherwise it fails at once
// (and is archived).
func recordFailure(tx *store.Tx, coordinator participant, culprit, reason string, callIDs []string) {
	d, now := tx.Data, store.Now()
	d.Failure = &store.Failure{
		FailedAt: now, Reason: reason, ParticipantID: culprit, CrashedCallIDs: callIDs,
		Coordinator: coordinator.key(),
	}
	d.DetectionTimestamp = &now
	if slices.ContainsFunc(d.CallFrames, func(f store.CallFrame) bool { return f.State == store.FrameActive }) {
		d.OperationState = store.StateCleanup
		tx.Log("WARNING", coordinator.ID, "CLEANUP_STARTED "+strings.Join(callIDs, ","))
		return
	}
	finishFailure(tx, coordinator.ID)
}

// finishFailure removes the remaining frames and fails the operation.
func finishFailure(tx *store.Tx, who string) {
	d, now := tx.Data, store.Now()
	d.CallFrames = []store.CallFrame{}
	d.OperationState = store.StateFailed
	d.RemovalTimestamp = &now
	reason := ""
	if d.Failure != nil {
		reason = d.Failure.Reason
	}
	tx.Log("ERROR", who, "OPERATION_FAILED "+reason)
}

func (b *localBackend) registerTemp(ctx context.Context, id string, who participant, path string) error {
	_, err := b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		if slices.ContainsFunc(d.TempResources, func(r store.TempResource) bool { return r.Path == path }) {
			return store.ErrNoChange
		}
		via := store.ViaLocal
		if who.viaServer {
			via = store.ViaServer
		}
		d.TempResources = append(d.TempResources, store.TempResource{
			Path: path, Owner: who.PID, RegisteredAt: store.Now(), ParticipantID: who.ID, Host: who.Host,
			RegisteredVia: via,
		})
		tx.Log("DEBUG", who.ID, "TEMP_REGISTERED "+path)
		return nil
	})
	return err
}

func (b *localBackend) unregisterTemp(ctx context.Context, id string, who participant, path string) error {
	_, err := b.update(ctx, id, func(tx *store.Tx) error {
		d := tx.Data
		n := len(d.TempResources)
		d.TempResources = slices.DeleteFunc(d.TempResources, func(r store.TempResource) bool { return r.Path == path })
		if len(d.TempResources) == n {
			return store.ErrNoChange
		}
		tx.Log("DEBUG", who.ID, "TEMP_UNREGISTERED "+path)
		return nil
	})
	return err
}

// failureInfo returns the failure recorded in d.
func failureInfo(d *store.Data) OperationFailedInfo {
	info := OperationFailedInfo{OperationID: d.OperationID}
	if f := d.Failure; f != nil {
		info.FailedAt = f.FailedAt.Time
		info.Reason = f.Reason
		info.ParticipantID = f.ParticipantID
		info.CrashedCallIDs = slices.Clone(f.CrashedCallIDs)
	}
	return info
}

func (b *localBackend) holdLiveness(id string, who participant) (*store.Liveness, error) {
	return b.st.HoldLiveness(id, who.ID, who.PID)
}

func (b *localBackend) heartbeat(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		d, now := tx.Data, store.Now()
		d.LastHeartbeat = now
		if i := d.Participant(who.ID, who.Host, who.PID); i >= 0 {
			d.Participants[i].LastHeartbeat = now
		}
		for i := range d.CallFrames {
			if f := &d.CallFrames[i]; f.ParticipantID == who.ID && f.PID == who.PID && f.Host == who.Host {
				f.LastHeartbeat = now
			}
		}
		return nil
	})
}

// crashReport is the outcome of reportCrash.
type crashReport struct {
	Data *store.Data
	// Crashed is true when this report declared the victim crashed (and
	// the reporter became the coordinator of what follows).
	Crashed bool
}

func (b *localBackend) reportCrash(ctx context.Context, id string, who, victim participant, seen store.Time) (crashReport, error) {
	var rep crashReport
	d, err := b.update(ctx, id, func(tx *store.Tx) error {
		i := tx.Data.Participant(victim.ID, victim.Host, victim.PID)
		if i < 0 || tx.Data.Participants[i].State != store.ParticipantActive {
			return store.ErrNoChange // already handled, or gone
		}
		if !seen.IsZero() && !tx.Data.Participants[i].LastHeartbeat.Equal(seen.Time) {
			return store.ErrNoChange // it beat since the reporter looked
		}
		markCrashed(tx, who, victim)
		rep.Crashed = true
		return nil
	})
	rep.Data = d
	return rep, err
}

// markCrashed records that the victim process is gone, as seen by who:
// its participant record and frames are marked crashed (CRASH_DETECTED);
// its contained frames are removed; if a frame fails on crash, the
// operation fails with who as coordinator. The victim's temp records that
// who will try to delete (see tempsHandledBy) leave the ledger; who
// deletes only what the victim's temp registry lists, never what the
// ledger does.
func markCrashed(tx *store.Tx, who, victim participant) {
	d := tx.Data
	d.Participants[d.Participant(victim.ID, victim.Host, victim.PID)].State = store.ParticipantCrashed
	var failing, contained []string
	for i := range d.CallFrames {
		f := &d.CallFrames[i]
		if f.ParticipantID != victim.ID || f.PID != victim.PID || f.Host != victim.Host || f.State != store.FrameActive {
			continue
		}
		f.State = store.FrameCrashed
		if f.FailOnCrash {
			failing = append(failing, f.CallID)
		} else {
			contained = append(contained, f.CallID)
		}
	}
	tx.Log("ERROR", who.ID, fmt.Sprintf("CRASH_DETECTED %s calls=%s", victim.key(), strings.Join(append(slices.Clone(failing), contained...), ",")))
	d.CallFrames = slices.DeleteFunc(d.CallFrames, func(f store.CallFrame) bool {
		return f.State == store.FrameCrashed && !f.FailOnCrash
	})
	d.TempResources = slices.DeleteFunc(d.TempResources, func(r store.TempResource) bool {
		return r.ParticipantID == victim.ID && r.Owner == victim.PID && tempsHandledBy(r, who)
	})
	if len(failing) > 0 && d.OperationState == store.StateRunning {
		reason := fmt.Sprintf("participant %s crashed", victim.key())
		recordFailure(tx, who, victim.ID, reason, failing)
	}
}

// tempsHandledBy reports whether who, cleaning up after the temp
// resource's registrant, will try to delete it: a LocalLedger on its host
// does, for a path registered through a LocalLedger; a participant acting
// through a server never does. Such records leave the ledger then; others
// stay listed, as nobody will delete them.
func tempsHandledBy(r store.TempResource, who participant) bool {
	return r.RegisteredVia == store.ViaLocal && r.Host == who.Host && !who.viaServer
}

func (b *localBackend) cleanedUp(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		changed := false
		for i := range tx.Data.CallFrames {
			f := &tx.Data.CallFrames[i]
			if f.ParticipantID == who.ID && f.PID == who.PID && f.Host == who.Host && f.State == store.FrameActive {
				f.State = store.FrameCleanedUp
				changed = true
			}
		}
		if !changed {
			return store.ErrNoChange
		}
		tx.Log("INFO", who.ID, "CLEANUP_DONE "+who.key())
		return nil
	})
}

func (b *localBackend) finishCleanup(ctx context.Context, id string, who participant) (*store.Data, error) {
	return b.update(ctx, id, func(tx *store.Tx) error {
		if tx.Data.OperationState != store.StateCleanup {
			return store.ErrNoChange
		}
		finishFailure(tx, who.ID)
		return nil
	})
}

func (b *localBackend) probe(id string, p participant) store.LiveProbe {
	return b.st.ProbeLiveness(id, p.ID, p.PID)
}

// sweepLoop sweeps the directory for orphans when the ledger opens and then
// every period, until ctx ends.
func (b *localBackend) sweepLoop(ctx context.Context, who participant, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		b.sweep(ctx, who)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep fails and archives every live operation whose participants are all
// gone while at least one of them died: nobody is left to coordinate its
// cleanup. Operations whose participants all left cleanly are kept; someone
// may join them again.
func (b *localBackend) sweep(ctx context.Context, who participant) {
	ids, err := b.st.List()
	if err != nil {
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		d, err := b.st.Read(id)
		if err != nil || d.Finished() || !b.orphaned(d, who) {
			continue
		}
		b.update(ctx, id, func(tx *store.Tx) error {
			if !b.orphaned(tx.Data, who) {
				return store.ErrNoChange
			}
			// Nobody else uses an orphan: its temp resources go under
			// its lock, before it is archived (and its temp registries
			// with it), so that whoever sees it archived sees them gone.
			b.removeOrphanTemps(tx.Data)
			sweepOrphan(tx, who)
			return nil
		})
	}
}

// orphaned reports whether no participant of d is alive and one died.
func (b *localBackend) orphaned(d *store.Data, who participant) bool {
	died := false
	for _, p := range d.Participants {
		switch p.State {
		case store.ParticipantCrashed:
			died = true
		case store.ParticipantActive:
			if !b.gone(d.OperationID, &p, who) {
				return false
			}
			died = true
		}
	}
	return died
}

// gone reports whether an active participant is certainly dead: on this
// host its liveness lock is free; without a liveness file (a remote client
// on this host) or on another host, its heartbeat is older than three of
// its own stale thresholds by the wall clock, plus a minute of allowance
// for clock skew between hosts. (Live monitors judge staleness on their
// own monotonic clocks; the sweep has no history to do so.)
func (b *localBackend) gone(id string, p *store.Participant, who participant) bool {
	if p.Host == who.Host && b.st.Dead(id, p.ParticipantID, p.PID) {
		return true
	}
	_, stale := settingsOf(p)
	limit := 3 * stale
	if p.Host != who.Host {
		limit += time.Minute
	}
	return time.Since(p.LastHeartbeat.Time) > limit && !b.st.HasLiveness(id, p.ParticipantID, p.PID)
}

// removeOrphanTemps deletes what the temp registries of the participant
// processes of the orphan d that died allow this ledger to delete (see
// tempCleaner); the ledger server deletes nothing.
func (b *localBackend) removeOrphanTemps(d *store.Data) {
	if b.temps == nil {
		return
	}
	for i := range d.Participants {
		if p := &d.Participants[i]; p.State != store.ParticipantLeft {
			b.temps.remove(d.OperationID, participantOf(p), b.temps.collect(d.OperationID, participantOf(p)))
		}
	}
}

// sweepOrphan fails an orphaned operation and removes everything of it.
func sweepOrphan(tx *store.Tx, who participant) {
	d := tx.Data
	var calls []string
	for i := range d.CallFrames {
		calls = append(calls, d.CallFrames[i].CallID)
	}
	for i := range d.Participants {
		if d.Participants[i].State == store.ParticipantActive {
			d.Participants[i].State = store.ParticipantCrashed
		}
	}
	d.TempResources = slices.DeleteFunc(d.TempResources, func(r store.TempResource) bool { return tempsHandledBy(r, who) })
	tx.Log("ERROR", who.ID, "CRASH_DETECTED all participants are gone (orphan sweep)")
	if d.OperationState == store.StateRunning {
		now := store.Now()
		d.Failure = &store.Failure{FailedAt: now, Reason: "all participants are gone", CrashedCallIDs: calls, Coordinator: who.key()}
		d.DetectionTimestamp = &now
	}
	finishFailure(tx, who.ID)
}
