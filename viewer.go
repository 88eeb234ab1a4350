package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// Viewer reads a ledger without taking part in it: which operations it
// holds, their state and their logs. The ledger command is built on it. A
// Viewer is safe for concurrent use.
type Viewer struct {
	b     *storeBackend
	owned bool // Close closes the store
}

// NewViewer returns a Viewer of the operations in s. Closing the Viewer
// does not close s.
func NewViewer(s journal.Store) *Viewer { return &Viewer{b: &storeBackend{s: s}} }

// OpenViewer returns a Viewer of the ledger directory o.BasePath. Of o,
// only BasePath is used.
func OpenViewer(o Options) (*Viewer, error) {
	if o.BasePath == "" {
		return nil, errors.New("ledger: OpenViewer: Options.BasePath is empty")
	}
	d, err := dirstore.Open(o.BasePath, dirstore.Options{Host: hostname()})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", o.BasePath, err)
	}
	return &Viewer{b: &storeBackend{s: d}, owned: true}, nil
}

// Close releases the store if the Viewer opened it.
func (v *Viewer) Close() error {
	if v.owned {
		return v.b.close()
	}
	return nil
}

// List returns the ids of the live operations or, with archived, of the
// archived ones, oldest first.
func (v *Viewer) List(ctx context.Context, archived bool) ([]string, error) {
	ids, err := v.b.s.List(ctx, archived)
	return ids, storeError(err)
}

// State returns the state of operation id, live or archived.
func (v *Viewer) State(ctx context.Context, id string) (*Data, error) {
	if err := store.CheckOperationID(id); err != nil {
		return nil, err
	}
	nv, vitals, err := v.b.state(ctx, id, view{})
	if err != nil {
		return nil, err
	}
	return withBeats(nv.d, vitals), nil
}

// Log returns the log of operation id, live or archived: its INFO and
// higher lines, or with debug its DEBUG lines.
func (v *Viewer) Log(ctx context.Context, id string, debug bool) ([]byte, error) {
	if err := store.CheckOperationID(id); err != nil {
		return nil, err
	}
	b, err := v.b.s.ReadLog(ctx, id, debug)
	return b, storeError(err)
}
