package ledger

import (
	"errors"
	"slices"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// view is what a process knows of an operation: its state at a position of
// its journal. Views are values; the state they hold is shared and never
// modified.
type view struct {
	d    *store.Data // nil before the first record
	rev  journal.Rev // the position of d and lazy
	base journal.Rev // the store's snapshot position, as last seen
	done bool        // the journal is archived: nothing will follow

	// lazy are records up to rev that d does not hold yet: routine
	// records (see routine) made by other processes, or by other
	// goroutines of this one, which a participant leaves undecoded until
	// it needs the frames of others' calls, so that the work of its
	// change does not grow with the processes that share the operation.
	// full applies them.
	lazy *putOff
}

// putOff is a chain of records a view put off, the latest first. A link
// is never modified: views that put off the same records share them.
type putOff struct {
	prev *putOff
	recs []journal.Record
	// ids are the call ids that recs name, found without decoding them
	// (see scanRoutine).
	ids  []string
	mask uint64 // idBit of each of ids: most links are passed over by it
	n    int    // records in the chain
}

// records returns the records of the chain, in journal order.
func (p *putOff) records() []journal.Record {
	if p == nil {
		return nil
	}
	out := make([]journal.Record, p.n)
	for l := p; l != nil; l = l.prev {
		copy(out[l.n-len(l.recs):], l.recs)
	}
	return out
}

// len returns how many records p holds.
func (p *putOff) len() int {
	if p == nil {
		return 0
	}
	return p.n
}

// fold returns v moved to the end of tail, which a store returned for a
// reader at v.rev. With lazy, routine records are put off while the
// operation runs; every other record is applied after them, in order.
func (v view) fold(tail journal.Tail, lazy bool) (view, error) {
	d, pending, err := foldLazy(v.d, v.lazy, tail, lazy)
	if err != nil {
		return v, corruptRecord(tail.Source, err)
	}
	return view{d: d, lazy: pending, rev: tail.End(v.rev), base: max(tail.Base, v.base), done: v.done || tail.Archived}, nil
}

// full returns v with the records it put off applied. The frames they add
// come after those of the changes this process made meanwhile: the order
// of frames in the list may differ from another process's, never the
// frames.
func (v view) full() (view, error) {
	if v.lazy == nil {
		return v, nil
	}
	d, err := fold(v.d, journal.Tail{Records: v.lazy.records()})
	if err != nil {
		return v, corruptRecord("", err)
	}
	v.d, v.lazy = d, nil
	return v, nil
}

// mentions reports whether a record v put off names a call that ops add,
// change or remove.
func (v view) mentions(ops []op) bool {
	for i := range ops {
		var id string
		switch o := &ops[i]; o.Op {
		case opFrame:
			id = o.Frame.CallID
		case opUnframe:
			id = o.Key
		default:
			continue
		}
		if v.names(id) {
			return true
		}
	}
	return false
}

// names reports whether a record v put off names call id s.
func (v view) names(s string) bool {
	bit := idBit(s)
	for l := v.lazy; l != nil; l = l.prev {
		if l.mask&bit == 0 {
			continue
		}
		if slices.Contains(l.ids, s) {
			return true
		}
	}
	return false
}

// idBit returns the bit of id in a putOff's mask.
func idBit(id string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * 1099511628211
	}
	return 1 << (h >> 58)
}

// foldLazy folds tail into d and the records put off before, pending
// (see view.fold).
func foldLazy(d *store.Data, pending *putOff, tail journal.Tail, lazy bool) (*store.Data, *putOff, error) {
	if tail.Snapshot != nil {
		nd, err := fold(nil, journal.Tail{Snapshot: tail.Snapshot})
		if err != nil {
			return nil, nil, err
		}
		d, pending = nd, nil
	}
	i := 0
	if lazy && d != nil && d.OperationState == store.StateRunning {
		var l putOff
		for ; i < len(tail.Records); i++ {
			ids, ok := scanRoutine(tail.Records[i].Body)
			if !ok {
				break
			}
			l.ids = append(l.ids, ids...)
		}
		if i > 0 {
			l.prev, l.recs, l.n = pending, tail.Records[:i:i], pending.len()+i
			for _, id := range l.ids {
				l.mask |= idBit(id)
			}
			pending = &l
		}
	}
	if i == len(tail.Records) {
		return d, pending, nil
	}
	// Everything from here on is applied, after what was put off.
	nd, err := fold(d, journal.Tail{Records: append(pending.records(), tail.Records[i:]...)})
	return nd, nil, err
}

// corruptRecord is the error of a journal of source whose records do not
// fold.
func corruptRecord(source string, err error) error {
	ce := &CorruptError{Path: source, Err: err}
	var fe *store.FieldError
	if errors.As(err, &fe) {
		ce.Field, ce.Err = fe.Field, fe.Err
	}
	return ce
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
