package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// storeBackend runs the rules over a journal.Store. It is the backend of
// LocalLedger and of ledgers over any other store, and the server runs it
// for its clients.
type storeBackend struct {
	s journal.Store
	// temps deletes the temp resources of dead processes; nil for the
	// server and for stores without temp registries.
	temps *tempCleaner
	// swept, when set, is told of each operation the orphan sweep failed
	// (the server counts them).
	swept func(id string)
	// lazy lets the views of a participant process keep the routine
	// records of others undecoded (see view.lazy); the server and
	// viewers, which show and serve whole states, do not.
	lazy bool
}

// outcome is what a change found, beyond the state.
type outcome struct {
	crashed bool // a crashOp declared its victim crashed
}

// create creates an operation.
func (b *storeBackend) create(ctx context.Context, c createOp) (view, error) {
	return b.createKeyed(ctx, c, requestKey{})
}

// createKeyed is create for a change named by an idempotency key.
func (b *storeBackend) createKeyed(ctx context.Context, c createOp, key requestKey) (view, error) {
	tx := &tx{now: store.Now()}
	if err := c.apply(tx); err != nil {
		return view{}, err
	}
	recs, err := records(diff(nil, tx.d), false, tx, key)
	if err != nil {
		return view{}, err
	}
	remember(tx.d, key)
	tail, err := b.s.Create(ctx, c.id, journal.Change{Records: recs, Snapshot: snapshot(tx.d, journal.Rev(len(recs)))})
	if err != nil {
		return view{}, storeError(err)
	}
	return view{d: tx.d, rev: tail.End(0)}, nil
}

// apply carries out change c on operation id for a caller whose view is
// v, and returns the view after it.
func (b *storeBackend) apply(ctx context.Context, id string, v view, c change) (view, outcome, error) {
	nv, _, out, err := b.applyKeyed(ctx, id, v, c, requestKey{})
	return nv, out, err
}

// applyKeyed is apply for a change that may have been made before: key,
// when not empty, names the change, and a change whose key is among the
// records the caller has not seen is not made again. It also returns the
// tail the store gave (what v had not seen, and the record appended).
func (b *storeBackend) applyKeyed(ctx context.Context, id string, v view, c change, key requestKey) (view, journal.Tail, outcome, error) {
	var (
		out    outcome
		after  view  // the state the change was applied to, then its result
		failed error // the change refused, or the operation had finished
	)
	tail, err := b.s.Update(ctx, id, v.rev, func(t journal.Tail) (journal.Change, error) {
		cur, err := foldFor(id, v, t, b.lazy)
		if err != nil {
			return journal.Change{}, err
		}
		if cur.lazy != nil {
			// Decide on the state without the records put off; a change
			// that needs them (one that is not routine, fails there, or
			// names a call they name) is decided again on the whole.
			ch, err := decide(id, cur, c, key, &out, &after, &failed)
			if err == nil && ch.Quiet {
				return ch, nil
			}
			if cur, err = cur.full(); err != nil {
				return journal.Change{}, err
			}
		}
		return decide(id, cur, c, key, &out, &after, &failed)
	})
	if err != nil {
		if errors.Is(err, journal.ErrArchived) {
			nv, tail, err := b.archived(ctx, id, v)
			return nv, tail, outcome{}, err
		}
		return v, journal.Tail{}, outcome{}, storeError(err)
	}
	if failed != nil {
		return after, tail, outcome{}, failed
	}
	after.rev = tail.End(v.rev)
	return after, tail, out, nil
}

// decide carries out change c on the state of cur and returns the journal
// change that records it. The change is Quiet when it is routine (see
// routineOps) on a running operation, compacts nothing, and names no call
// that a record cur put off names: only such a change may be decided
// without those records. On a cur with records put off, any other change
// is given back before it is encoded, as no change and not quiet, for the
// caller to decide again on the whole state. decide sets what the caller
// of applyKeyed returns: the outcome, the view after the change, and the
// error of a refused change or of an operation that had finished.
func decide(id string, cur view, c change, key requestKey, out *outcome, after *view, failed *error) (journal.Change, error) {
	*out, *after, *failed = outcome{}, cur, nil
	if cur.d == nil {
		return journal.Change{}, fmt.Errorf("%w: %s has no state", ErrCorruptLedger, id)
	}
	if made(cur.d, key) {
		return journal.Change{}, nil // made before: answer with it
	}
	if err := finished(cur.d); err != nil {
		// Finished but not archived: its writer died in between.
		*failed = err
		return journal.Change{Snapshot: snapshot(cur.d, cur.rev), Archive: true}, nil
	}
	var d *store.Data
	if editsFramesOnly(c) && key.key == "" {
		d = cur.d.CloneFrames() // the change edits the frames alone; with a key, remember edits the keys
	} else {
		d = cur.d.Clone()
	}
	tx := &tx{d: d, now: store.Now()}
	if err := c.apply(tx); err != nil {
		if errors.Is(err, errNoChange) {
			return journal.Change{}, nil
		}
		return journal.Change{}, err
	}
	*out = outcome{crashed: tx.crashed}
	ops := diff(cur.d, tx.d)
	// A call that a record put off names too (an id another participant
	// used, a frame another process changed) makes the change not quiet:
	// only the whole state tells what the change makes of it.
	routine := routineOps(cur.d, ops) && (cur.lazy == nil || !cur.mentions(ops))
	quiet := routine && tx.d.OperationState == store.StateRunning
	if cur.lazy != nil && !quiet {
		return journal.Change{}, nil // the caller decides it again on the whole state
	}
	recs, err := records(ops, routine, tx, key)
	if err != nil {
		return journal.Change{}, err
	}
	if len(recs) > 0 {
		remember(tx.d, key)
	}
	*after = view{d: tx.d, rev: cur.rev + journal.Rev(len(recs)), base: cur.base, lazy: cur.lazy}
	ch := journal.Change{Records: recs, Quiet: quiet}
	switch {
	case tx.d.Finished():
		ch.Snapshot, ch.Archive = snapshot(tx.d, after.rev), true
		after.done, ch.Quiet = true, false
	case after.rev-cur.base >= compactAfter(tx.d):
		if cur.lazy != nil {
			ch.Quiet = false // the snapshot needs the whole state: decide again
			break
		}
		ch.Snapshot = snapshot(tx.d, after.rev)
		after.base = after.rev
	}
	return ch, nil
}

// archived reads an archived operation and returns the error of its end.
func (b *storeBackend) archived(ctx context.Context, id string, v view) (view, journal.Tail, error) {
	nv, tail, err := b.readTail(ctx, id, v)
	if err != nil {
		return v, tail, err
	}
	if err := finished(nv.d); err != nil {
		return nv, tail, err
	}
	return nv, tail, fmt.Errorf("%w: %s was archived unfinished", ErrCorruptLedger, id)
}

// records returns the records of a decided change of ops, routine or
// not (see body.Routine): one, with its edits, its key and its log lines,
// or none if it changed nothing and logged nothing.
func records(ops []op, routine bool, tx *tx, key requestKey) ([]journal.Record, error) {
	if len(ops) == 0 && len(tx.log) == 0 {
		return nil, nil
	}
	body, err := encodeBody(routine, ops, key)
	if err != nil {
		return nil, err
	}
	return []journal.Record{{Time: tx.now.Time, Body: body, Log: tx.log}}, nil
}

// read returns the view of operation id after what v has seen.
func (b *storeBackend) read(ctx context.Context, id string, v view) (view, error) {
	nv, _, err := b.readTail(ctx, id, v)
	return nv, err
}

// readTail is read that also returns the tail the store gave.
func (b *storeBackend) readTail(ctx context.Context, id string, v view) (view, journal.Tail, error) {
	tail, err := b.s.Read(ctx, id, v.rev)
	if err != nil {
		return v, tail, storeError(err)
	}
	nv, err := foldFor(id, v, tail, b.lazy)
	if err != nil {
		return v, tail, err
	}
	if nv.d == nil {
		return v, tail, fmt.Errorf("%w: %s has no state", ErrCorruptLedger, id)
	}
	return nv, tail, nil
}

// foldFor is v.fold for operation id: a state of another operation in
// its journal (a file renamed or forged) is corruption, never taken.
func foldFor(id string, v view, t journal.Tail, lazy bool) (view, error) {
	nv, err := v.fold(t, lazy)
	if err == nil && nv.d != nil && nv.d.OperationID != id {
		return v, &CorruptError{Path: t.Source, Field: "operationId", Err: fmt.Errorf("%q does not match the file name", nv.d.OperationID)}
	}
	return nv, err
}

// snapshot returns the state d, at position rev of its journal, as a
// document: the Dart layout, with journalRev (see store.Data).
func snapshot(d *store.Data, rev journal.Rev) []byte {
	h := *d
	h.JournalRev = uint64(rev)
	return store.Encode(&h)
}

// storeError maps the errors of a store to the ledger's.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, journal.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrOperationNotFound, err)
	case errors.Is(err, journal.ErrExists):
		return fmt.Errorf("%w: %w", store.ErrExists, err)
	case errors.As(err, new(*dirstore.DartLockError)):
		return fmt.Errorf("%w: %w: %w", ErrLockTimeout, ErrDartLocked, err)
	case errors.Is(err, journal.ErrLocked):
		return fmt.Errorf("%w: %w", ErrLockTimeout, err)
	case errors.Is(err, journal.ErrCorrupt):
		var ce *dirstore.CorruptError
		if errors.As(err, &ce) {
			return &CorruptError{Path: ce.Path, Err: ce.Err}
		}
		return &CorruptError{Path: "", Err: err}
	}
	return err
}

// watch returns a channel that receives a value after every change of
// operation id (see journal.Store.Watch), for those who show every change.
func (b *storeBackend) watch(ctx context.Context, id string) (<-chan struct{}, error) {
	ch, err := b.s.Watch(ctx, id)
	return ch, storeError(err)
}

// watchLoud implements backend: through the store's journal.QuietWatcher
// where it has one, so that routine changes wake nobody.
func (b *storeBackend) watchLoud(ctx context.Context, id string) (<-chan struct{}, error) {
	qw, ok := b.s.(journal.QuietWatcher)
	if !ok {
		return b.watch(ctx, id)
	}
	ch, err := qw.WatchLoud(ctx, id)
	return ch, storeError(err)
}

// heartbeat implements backend: the lease's beat, then the vitals of
// every member. A participant without a lease (remote, through this
// backend in a server) has its beat recorded by the store.
func (b *storeBackend) heartbeat(ctx context.Context, id string, who participant, lease journal.Lease, v view) ([]journal.Vital, view, error) {
	var err error
	if lease != nil {
		err = lease.Beat(ctx)
	} else {
		err = b.s.Beat(ctx, id, who.member(0))
	}
	if err != nil {
		return nil, v, storeError(err)
	}
	nv, vs, err := b.state(ctx, id, v)
	return vs, nv, err
}

// state implements backend.
func (b *storeBackend) state(ctx context.Context, id string, v view) (view, []journal.Vital, error) {
	nv, err := b.read(ctx, id, v)
	if err != nil {
		return v, nil, err
	}
	vs, err := b.s.Vitals(ctx, id)
	if err != nil {
		return nv, nil, storeError(err)
	}
	return nv, vs, nil
}

// hold implements leaseBackend.
func (b *storeBackend) hold(ctx context.Context, id string, who participant, ttl time.Duration) (journal.Lease, error) {
	l, err := b.s.Hold(ctx, id, who.member(ttl))
	return l, storeError(err)
}

// observe implements leaseBackend.
func (b *storeBackend) observe(ctx context.Context, id string, p participant) (<-chan struct{}, error) {
	return b.s.Observe(ctx, id, p.member(0))
}

// close implements backend.
func (b *storeBackend) close() error { return b.s.Close() }
