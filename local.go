package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	l.client = newClient(o, &localBackend{st: st})
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

// BasePath returns the ledger directory.
func (l *LocalLedger) BasePath() string { return l.store.Dir() }

// localBackend implements backend over a store. The ledger server uses it
// too, so the rules of every change live here once.
type localBackend struct {
	st *store.Store
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
		tx.Log("INFO", who.ID, fmt.Sprintf("PARTICIPANT_JOINED pid=%d host=%s session=%d", who.PID, who.Host, p.Sessions))
		return nil
	})
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
			return fmt.Errorf("ledger: call frame %s already exists", f.CallID)
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
			recordFailure(tx, who.ID, reason, []string{callID})
		}
		return nil
	})
}

// recordFailure marks a running operation as failed by who. When frames of
// other calls are still active, their participants must clean up first: the
// operation goes to cleanup and the coordinator finishes it. Otherwise it
// fails at once (and is archived).
func recordFailure(tx *store.Tx, who, reason string, callIDs []string) {
	d, now := tx.Data, store.Now()
	d.Failure = &store.Failure{FailedAt: now, Reason: reason, ParticipantID: who, CrashedCallIDs: callIDs}
	d.DetectionTimestamp = &now
	if slices.ContainsFunc(d.CallFrames, func(f store.CallFrame) bool { return f.State == store.FrameActive }) {
		d.OperationState = store.StateCleanup
		tx.Log("WARNING", who, "CLEANUP_STARTED "+strings.Join(callIDs, ","))
		return
	}
	finishFailure(tx, who)
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
		d.TempResources = append(d.TempResources, store.TempResource{
			Path: path, Owner: who.PID, RegisteredAt: store.Now(), ParticipantID: who.ID, Host: who.Host,
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

func (b *localBackend) holdLiveness(id string, who participant) (func(), error) {
	l, err := b.st.HoldLiveness(id, who.ID, who.PID)
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}
