package ledger

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// The rules of the ledger: every change of an operation's state, decided
// on the state as it is. A change edits tx.d, a copy of the state, and
// logs what happened; or it refuses with an error, and nothing changes.
// Rules do no I/O and read no clock (tx.now is the time of the change):
// the same rules run in every process, over every store, and in the
// server for its clients. What a change did is recorded as plain edits
// (record.go), so readers never run the rules again.

// change is one kind of change of an operation's state, with its
// arguments.
type change interface {
	apply(tx *tx) error
}

// editsFramesOnly reports whether c edits nothing of tx.d but its call
// frames, so that decide copies those alone (see store.Data.CloneFrames).
// It names the types themselves: a change that embeds one of them is not
// taken for it.
func editsFramesOnly(c change) bool {
	switch c.(type) {
	case addFrameOp, removeFrameOp:
		return true
	}
	return false
}

// tx is one change being decided.
type tx struct {
	d   *store.Data // the state to edit; nil before creation
	now store.Time
	log []journal.LogLine

	// What the change found, for its caller.
	crashed bool // crashOp declared the victim crashed
}

// errNoChange, returned by a change, ends it without a record: the state
// is already as the change would make it.
var errNoChange = errors.New("no change")

func (tx *tx) logf(level, who, format string, args ...any) {
	tx.log = append(tx.log, journal.LogLine{Level: level, Participant: who, Message: fmt.Sprintf(format, args...)})
}

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

// createOp creates the operation id with who as its initiator. With dart,
// the request is a Dart client's, and the operation is bound to who (see
// rules_dart.go).
type createOp struct {
	id          string
	who         participant
	description string
	dart        bool
}

func (c createOp) apply(tx *tx) error {
	if tx.d != nil {
		return fmt.Errorf("%w: %s", store.ErrExists, c.id)
	}
	now := tx.now
	tx.d = &store.Data{
		OperationID:    c.id,
		InitiatorID:    c.who.ID,
		Description:    c.description,
		StartTime:      now,
		OperationState: store.StateRunning,
		LastHeartbeat:  now,
		CallFrames:     []store.CallFrame{},
		TempResources:  []store.TempResource{},
		Participants:   []store.Participant{c.who.record(now)},
	}
	if c.dart {
		tx.d.DartParticipant = c.who.key()
	}
	tx.logf("INFO", c.who.ID, "OPERATION_CREATED %s", c.description)
	return nil
}

// joinOp adds a session of who.
type joinOp struct{ who participant }

func (c joinOp) apply(tx *tx) error {
	d := tx.d
	i := d.Participant(c.who.ID, c.who.Host, c.who.PID)
	if i < 0 {
		d.Participants = append(d.Participants, c.who.record(tx.now))
		i = len(d.Participants) - 1
	} else {
		p := &d.Participants[i]
		sessions := p.Sessions + 1
		*p = c.who.record(p.JoinedAt)
		p.Sessions = sessions
		p.LastHeartbeat = tx.now
	}
	p := &d.Participants[i]
	tx.logf("INFO", c.who.ID, "PARTICIPANT_JOINED pid=%d host=%s session=%d", c.who.PID, c.who.Host, p.Sessions)
	return nil
}

// record returns the participant record of p, joined at t, with one
// session.
func (p participant) record(t store.Time) store.Participant {
	return store.Participant{
		ParticipantID: p.ID, PID: p.PID, Host: p.Host, Sessions: 1,
		JoinedAt: t, LastHeartbeat: t, State: store.ParticipantActive,
		HeartbeatIntervalMs: ms(p.Interval), StaleThresholdMs: ms(p.Stale), Remote: p.viaServer,
	}
}

// ms is a duration as a participant record holds it: whole milliseconds,
// rounded up so that a setting below 1ms is not taken for absent.
func ms(d time.Duration) int {
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// leaveOp ends a session of who; the last one marks it left.
type leaveOp struct{ who participant }

func (c leaveOp) apply(tx *tx) error {
	d := tx.d
	i := d.Participant(c.who.ID, c.who.Host, c.who.PID)
	if i < 0 {
		return errNoChange
	}
	p := &d.Participants[i]
	p.Sessions = max(p.Sessions-1, 0)
	if p.Sessions == 0 {
		p.State = store.ParticipantLeft
		tx.logf("INFO", c.who.ID, "PARTICIPANT_LEFT pid=%d", c.who.PID)
	}
	return nil
}

// completeOp completes the operation; only its initiator may.
type completeOp struct{ who participant }

func (c completeOp) apply(tx *tx) error {
	d := tx.d
	if d.InitiatorID != c.who.ID {
		return fmt.Errorf("%w: %s is not %s", ErrNotInitiator, c.who.ID, d.InitiatorID)
	}
	if d.OperationState != store.StateRunning {
		return &OperationFailedError{Info: failureInfo(d)} // failing: cannot complete
	}
	d.OperationState = store.StateCompleted
	d.LastHeartbeat = tx.now
	tx.logf("INFO", c.who.ID, "OPERATION_COMPLETED")
	return nil
}

// logOp writes a line to the log.
type logOp struct {
	who   participant
	level LogLevel
	msg   string
}

func (c logOp) apply(tx *tx) error {
	tx.log = append(tx.log, journal.LogLine{Level: c.level.String(), Participant: c.who.ID, Message: c.msg})
	return nil
}

// abortOp sets or clears the abort flag.
type abortOp struct {
	who     participant
	aborted bool
}

func (c abortOp) apply(tx *tx) error {
	if tx.d.Aborted == c.aborted {
		return errNoChange
	}
	tx.d.Aborted = c.aborted
	tx.logf("WARNING", c.who.ID, "ABORT_SET %t", c.aborted)
	return nil
}

// addFrameOp adds a call frame of who.
type addFrameOp struct {
	who  participant
	spec frameSpec
}

func (c addFrameOp) apply(tx *tx) error {
	d, f := tx.d, c.spec
	if d.OperationState != store.StateRunning {
		return &OperationFailedError{Info: failureInfo(d)}
	}
	if d.Frame(f.CallID) >= 0 {
		return fmt.Errorf("%w: %s", ErrCallExists, f.CallID)
	}
	d.CallFrames = append(d.CallFrames, store.CallFrame{
		ParticipantID: c.who.ID, CallID: f.CallID, PID: c.who.PID, Host: c.who.Host,
		StartTime: tx.now, LastHeartbeat: tx.now, State: store.FrameActive,
		Description: f.Description, FailOnCrash: f.FailOnCrash,
	})
	switch f.Kind {
	case frameCall:
		tx.logf("INFO", c.who.ID, "CALL_STARTED %s %s", f.CallID, f.Description)
	case frameSpawned:
		tx.logf("INFO", c.who.ID, "CALL_SPAWNED %s %s", f.CallID, f.Description)
	}
	return nil
}

// removeFrameOp removes the frame of a call that ended well.
type removeFrameOp struct {
	who    participant
	callID string
	kind   frameKind
}

func (c removeFrameOp) apply(tx *tx) error {
	d := tx.d
	i := d.Frame(c.callID)
	if i < 0 {
		return fmt.Errorf("%w: no frame %s", ErrCallNotFound, c.callID)
	}
	d.CallFrames = slices.Delete(d.CallFrames, i, i+1)
	switch c.kind {
	case frameCall:
		tx.logf("INFO", c.who.ID, "CALL_ENDED %s", c.callID)
	case frameSpawned:
		tx.logf("INFO", c.who.ID, "CALL_COMPLETED %s", c.callID)
	}
	return nil
}

// failFrameOp removes the frame of a failed call and, when it fails on
// crash, fails the operation. The stack goes to the debug log.
type failFrameOp struct {
	who                   participant
	callID, reason, stack string
}

func (c failFrameOp) apply(tx *tx) error {
	d := tx.d
	i := d.Frame(c.callID)
	if i < 0 {
		return fmt.Errorf("%w: no frame %s", ErrCallNotFound, c.callID)
	}
	failOnCrash := d.CallFrames[i].FailOnCrash
	d.CallFrames = slices.Delete(d.CallFrames, i, i+1)
	tx.logf("ERROR", c.who.ID, "CALL_FAILED %s %s", c.callID, c.reason)
	if c.stack != "" {
		tx.logf("DEBUG", c.who.ID, "CALL_FAILED %s stack: %s", c.callID, c.stack)
	}
	if failOnCrash && d.OperationState == store.StateRunning {
		recordFailure(tx, c.who, c.who.ID, c.reason, []string{c.callID})
	}
	return nil
}

// recordFailure marks a running operation as failed: the calls callIDs of
// participant culprit failed or crashed, and coordinator takes charge of
// the cleanup. When frames of other calls are still active, their
// participants must clean up first: the operation goes to cleanup and the
// coordinator finishes it later. Otherwise it fails at once.
func recordFailure(tx *tx, coordinator participant, culprit, reason string, callIDs []string) {
	d, now := tx.d, tx.now
	d.Failure = &store.Failure{
		FailedAt: now, Reason: reason, ParticipantID: culprit, CrashedCallIDs: callIDs,
		Coordinator: coordinator.key(),
	}
	d.DetectionTimestamp = &now
	if slices.ContainsFunc(d.CallFrames, func(f store.CallFrame) bool { return f.State == store.FrameActive }) {
		d.OperationState = store.StateCleanup
		tx.logf("WARNING", coordinator.ID, "CLEANUP_STARTED %s", strings.Join(callIDs, ","))
		return
	}
	finishFailure(tx, coordinator.ID)
}

// finishFailure removes the remaining frames and fails the operation.
func finishFailure(tx *tx, who string) {
	d, now := tx.d, tx.now
	d.CallFrames = []store.CallFrame{}
	d.OperationState = store.StateFailed
	d.RemovalTimestamp = &now
	reason := ""
	if d.Failure != nil {
		reason = d.Failure.Reason
	}
	tx.logf("ERROR", who, "OPERATION_FAILED %s", reason)
}

// tempOp registers (or unregisters) a temp resource of who.
type tempOp struct {
	who        participant
	path       string
	unregister bool
}

func (c tempOp) apply(tx *tx) error {
	d := tx.d
	if c.unregister {
		n := len(d.TempResources)
		d.TempResources = slices.DeleteFunc(d.TempResources, func(r store.TempResource) bool { return r.Path == c.path })
		if len(d.TempResources) == n {
			return errNoChange
		}
		tx.logf("DEBUG", c.who.ID, "TEMP_UNREGISTERED %s", c.path)
		return nil
	}
	if slices.ContainsFunc(d.TempResources, func(r store.TempResource) bool { return r.Path == c.path }) {
		return errNoChange
	}
	via := store.ViaLocal
	if c.who.viaServer {
		via = store.ViaServer
	}
	d.TempResources = append(d.TempResources, store.TempResource{
		Path: c.path, Owner: c.who.PID, RegisteredAt: tx.now, ParticipantID: c.who.ID, Host: c.who.Host,
		RegisteredVia: via,
	})
	tx.logf("DEBUG", c.who.ID, "TEMP_REGISTERED %s", c.path)
	return nil
}

// crashOp declares victim crashed, as seen by who, unless its heartbeat
// changed since seen (zero seen: unconditionally, for a proof such as a
// lease that ended or a process reporting itself after a signal).
type crashOp struct {
	who, victim participant
	seen        store.Time
}

func (c crashOp) apply(tx *tx) error {
	i := tx.d.Participant(c.victim.ID, c.victim.Host, c.victim.PID)
	if i < 0 || tx.d.Participants[i].State != store.ParticipantActive {
		return errNoChange // already handled, or gone
	}
	if !c.seen.IsZero() && !tx.d.Participants[i].LastHeartbeat.Equal(c.seen.Time) {
		return errNoChange // it beat since the reporter looked
	}
	markCrashed(tx, c.who, c.victim)
	tx.crashed = true
	return nil
}

// markCrashed records that the victim process is gone, as seen by who:
// its participant record and frames are marked crashed (CRASH_DETECTED);
// its contained frames are removed; if a frame fails on crash, the
// operation fails with who as coordinator. The victim's temp records that
// who will try to delete (see tempsHandledBy) leave the ledger; who
// deletes only what the victim's temp registry lists, never what the
// ledger does.
func markCrashed(tx *tx, who, victim participant) {
	d := tx.d
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
	tx.logf("ERROR", who.ID, "CRASH_DETECTED %s calls=%s", victim.key(), strings.Join(append(slices.Clone(failing), contained...), ","))
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

// cleanedUpOp marks the active frames of who cleaned up.
type cleanedUpOp struct{ who participant }

func (c cleanedUpOp) apply(tx *tx) error {
	changed := false
	for i := range tx.d.CallFrames {
		f := &tx.d.CallFrames[i]
		if f.ParticipantID == c.who.ID && f.PID == c.who.PID && f.Host == c.who.Host && f.State == store.FrameActive {
			f.State = store.FrameCleanedUp
			changed = true
		}
	}
	if !changed {
		return errNoChange
	}
	tx.logf("INFO", c.who.ID, "CLEANUP_DONE %s", c.who.key())
	return nil
}

// finishCleanupOp ends the cleanup phase: frames removed, state failed.
type finishCleanupOp struct{ who participant }

func (c finishCleanupOp) apply(tx *tx) error {
	if tx.d.OperationState != store.StateCleanup {
		return errNoChange
	}
	finishFailure(tx, c.who.ID)
	return nil
}

// sweepOp fails an operation whose participants are all gone (nobody is
// left to coordinate its cleanup) and removes everything of it. dead are
// the keys of the participants the sweeper found certainly dead; the rule
// sweeps only if every active participant is among them and one died.
type sweepOp struct {
	who  participant
	dead map[string]bool
}

func (c sweepOp) apply(tx *tx) error {
	d := tx.d
	if !orphaned(d, c.dead) {
		return errNoChange
	}
	var calls []string
	for i := range d.CallFrames {
		calls = append(calls, d.CallFrames[i].CallID)
	}
	for i := range d.Participants {
		if d.Participants[i].State == store.ParticipantActive {
			d.Participants[i].State = store.ParticipantCrashed
		}
	}
	d.TempResources = slices.DeleteFunc(d.TempResources, func(r store.TempResource) bool { return tempsHandledBy(r, c.who) })
	tx.logf("ERROR", c.who.ID, "CRASH_DETECTED all participants are gone (orphan sweep)")
	if d.OperationState == store.StateRunning {
		now := tx.now
		d.Failure = &store.Failure{FailedAt: now, Reason: "all participants are gone", CrashedCallIDs: calls, Coordinator: c.who.key()}
		d.DetectionTimestamp = &now
	}
	finishFailure(tx, c.who.ID)
	return nil
}

// orphaned reports whether no participant of d is alive (every active
// one is in dead) and one died.
func orphaned(d *store.Data, dead map[string]bool) bool {
	died := false
	for i := range d.Participants {
		p := &d.Participants[i]
		switch p.State {
		case store.ParticipantCrashed:
			died = true
		case store.ParticipantActive:
			if !dead[p.Key()] {
				return false
			}
			died = true
		}
	}
	return died
}
