package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"

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
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	nv, vitals, err := v.b.state(ctx, id, view{})
	if err != nil {
		return nil, err
	}
	return dataOf(withBeats(nv.d, vitals)), nil
}

// Document returns the state of operation id, live or archived, as the
// ledger writes it: the JSON document of the Dart ledger, with the keys
// it has and the ledger's additions, indented by two spaces.
func (v *Viewer) Document(ctx context.Context, id string) ([]byte, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	nv, vitals, err := v.b.state(ctx, id, view{})
	if err != nil {
		return nil, err
	}
	return store.Encode(withBeats(nv.d, vitals)), nil
}

// Log returns the log of operation id, live or archived: its INFO and
// higher lines, or with debug its DEBUG lines.
func (v *Viewer) Log(ctx context.Context, id string, debug bool) ([]byte, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	b, err := v.b.s.ReadLog(ctx, id, debug)
	return b, storeError(err)
}

// SetAbortFlag sets the abort flag of operation id, as the participant
// by (a name for the log, such as "ledger-cli"), who need not take part:
// every participant aborts. It returns the state after it.
func (v *Viewer) SetAbortFlag(ctx context.Context, id, by string) (*Data, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	if err := checkParticipantID(by); err != nil {
		return nil, err
	}
	who := participant{ID: by, PID: os.Getpid(), Host: hostname()}
	nv, _, err := v.b.apply(ctx, id, view{}, abortOp{who: who, aborted: true})
	if err != nil {
		return nil, err
	}
	return dataOf(nv.d), nil
}

// Prune removes the oldest archived operations beyond keep and returns
// how many it removed and kept, on stores that keep archives it can
// count (a ledger directory).
func (v *Viewer) Prune(ctx context.Context, keep int) (removed, kept int, err error) {
	p, ok := v.b.s.(interface {
		Prune(keep int) (removed, kept int, err error)
	})
	if !ok {
		return 0, 0, fmt.Errorf("ledger: this store cannot prune its archive")
	}
	return p.Prune(keep)
}
