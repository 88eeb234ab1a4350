package ledger

import (
	"errors"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// view is what a process knows of an operation: its state at a position of
// its journal. Views are values; the state they hold is shared and never
// modified.
type view struct {
	d    *store.Data // nil before the first record
	rev  journal.Rev // the position of d
	base journal.Rev // the store's snapshot position, as last seen
	done bool        // the journal is archived: nothing will follow
}

// fold returns v moved to the end of tail, which a store returned for a
// reader at v.rev.
func (v view) fold(tail journal.Tail) (view, error) {
	d, err := fold(v.d, tail)
	if err != nil {
		ce := &CorruptError{Path: tail.Source, Err: err}
		var fe *store.FieldError
		if errors.As(err, &fe) {
			ce.Field, ce.Err = fe.Field, fe.Err
		}
		return v, ce
	}
	return view{d: d, rev: tail.End(v.rev), base: max(tail.Base, v.base), done: v.done || tail.Archived}, nil
}

// newer reports whether w is further along the journal than v.
func (v view) newer(w view) bool {
	return w.rev > v.rev || w.rev == v.rev && w.done && !v.done
}

// compactAfter is how many records a journal may hold past its snapshot
// before a change compacts it: snapshots cost in proportion to the state,
// so they are spaced out in proportion to it too, which keeps their cost
// per change constant.
func compactAfter(d *store.Data) journal.Rev {
	size := 2*len(d.CallFrames) + len(d.Participants) + len(d.TempResources)
	for _, ks := range d.Keys {
		size += len(ks) * 2 / 5 // a key is a fifth of a frame, which counts 2
	}
	return journal.Rev(max(256, size))
}

// withBeats returns a copy of d whose heartbeat times include the beats
// the store recorded outside the journal (a lease's beats, a remote
// client's heartbeats): a participant's lastHeartbeat, that of its
// frames, and the operation's are the latest known.
func withBeats(d *store.Data, vitals []journal.Vital) *store.Data {
	d = d.Clone()
	if d == nil {
		return nil
	}
	for i := range d.Participants {
		p := &d.Participants[i]
		v := vitalOf(vitals, p)
		if v == nil || !v.Beat.After(p.LastHeartbeat.Time) {
			continue
		}
		beat := store.Time{Time: v.Beat.UTC().Truncate(time.Millisecond)}
		p.LastHeartbeat = beat
		for j := range d.CallFrames {
			if f := &d.CallFrames[j]; f.ParticipantID == p.ParticipantID && f.PID == p.PID && f.Host == p.Host && beat.After(f.LastHeartbeat.Time) {
				f.LastHeartbeat = beat
			}
		}
		if beat.After(d.LastHeartbeat.Time) {
			d.LastHeartbeat = beat
		}
	}
	return d
}
