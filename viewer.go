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
// holds, their state and their logs, and when they change. It reads a
// journal store (NewViewer), a ledger directory (OpenViewer) or a ledger
// server (ConnectViewer). The ledger command and the server's dashboard
// are built on it. A Viewer is safe for concurrent use.
type Viewer struct {
	src viewSource
}

// viewSource is what a Viewer reads: a journal store, or a ledger server
// (viewer_remote.go).
type viewSource interface {
	list(ctx context.Context, archived bool) ([]string, error)
	// state returns the state of id with its members' latest beats.
	state(ctx context.Context, id string) (*store.Data, error)
	log(ctx context.Context, id string, debug bool) ([]byte, error)
	watch(ctx context.Context, id string) (<-chan struct{}, error)
	watchList(ctx context.Context) (<-chan struct{}, error)
	abort(ctx context.Context, id string, by participant) (*store.Data, error)
	prune(ctx context.Context, keep int) (removed, kept int, err error)
	close() error
}

// NewViewer returns a Viewer of the operations in s. Closing the Viewer
// does not close s.
func NewViewer(s journal.Store) *Viewer {
	return &Viewer{src: &storeSource{b: &storeBackend{s: s}}}
}

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
	return &Viewer{src: &storeSource{b: &storeBackend{s: d}, owned: true}}, nil
}

// ConnectViewer returns a Viewer of the ledger that o names, as Connect
// would reach it: the ledger directory o.BasePath, which must exist, or
// else the first ledger server of o.ServerURL and o.ServerURLs that
// answers (moving to the next when one cannot be reached), or the one
// discovery finds. Of o,
// the fields of the directory's or the server's connection are used
// (BasePath; ServerURL, ServerURLs, Token, TLSConfig, RequestTimeout, Retry,
// Discovery), and Logger.
func ConnectViewer(ctx context.Context, o Options) (*Viewer, error) {
	if o.BasePath != "" && o.ServerURL != "" {
		return nil, errors.New("ledger: Options.BasePath and Options.ServerURL are both set; choose one backend")
	}
	if o.BasePath != "" {
		fi, err := os.Stat(o.BasePath)
		if err != nil {
			return nil, fmt.Errorf("ledger: open %s: %w", o.BasePath, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("ledger: open %s: not a directory", o.BasePath)
		}
		return OpenViewer(o)
	}
	src, err := dialRemoteSource(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Viewer{src: src}, nil
}

// Close releases the store if the Viewer opened it, and the connections
// to a server.
func (v *Viewer) Close() error { return v.src.close() }

// List returns the ids of the live operations or, with archived, of the
// archived ones, oldest first.
func (v *Viewer) List(ctx context.Context, archived bool) ([]string, error) {
	return v.src.list(ctx, archived)
}

// State returns the state of operation id, live or archived.
func (v *Viewer) State(ctx context.Context, id string) (*Data, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	d, err := v.src.state(ctx, id)
	if err != nil {
		return nil, err
	}
	return dataOf(d), nil
}

// Document returns the state of operation id, live or archived, as the
// ledger writes it: the JSON document of the Dart ledger, with the keys
// it has and the ledger's additions, indented by two spaces.
func (v *Viewer) Document(ctx context.Context, id string) ([]byte, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	d, err := v.src.state(ctx, id)
	if err != nil {
		return nil, err
	}
	return store.Encode(d), nil
}

// Log returns the log of operation id, live or archived: its INFO and
// higher lines, or with debug its DEBUG lines.
func (v *Viewer) Log(ctx context.Context, id string, debug bool) ([]byte, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	return v.src.log(ctx, id, debug)
}

// Watch returns a channel that receives a value whenever operation id may
// have changed, pushed by the store (a ledger directory's file system
// events) or the server (its stream), never polled. Values are coalesced:
// after a change at least one arrives. The channel is closed when ctx
// ends; a Viewer of a server also closes it once the operation is
// archived, when the server ends the stream for good.
func (v *Viewer) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := checkOperationID(id); err != nil {
		return nil, err
	}
	return v.src.watch(ctx, id)
}

// WatchList returns a channel that receives a value whenever an operation
// may have been created, changed or archived, as Watch does for one. It
// is closed when ctx ends. A store that cannot announce new operations
// (one that does not implement journal.ListWatcher) is an error.
func (v *Viewer) WatchList(ctx context.Context) (<-chan struct{}, error) {
	return v.src.watchList(ctx)
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
	d, err := v.src.abort(ctx, id, participant{ID: by, PID: os.Getpid(), Host: hostname()})
	if err != nil {
		return nil, err
	}
	return dataOf(d), nil
}

// Prune removes the oldest archived operations beyond keep and returns
// how many it removed and kept, on stores that keep archives it can
// count (a ledger directory). A Viewer of a server cannot prune.
func (v *Viewer) Prune(ctx context.Context, keep int) (removed, kept int, err error) {
	return v.src.prune(ctx, keep)
}

// storeSource is a Viewer's source over a journal store.
type storeSource struct {
	b     *storeBackend
	owned bool // close closes the store
}

func (s *storeSource) list(ctx context.Context, archived bool) ([]string, error) {
	ids, err := s.b.s.List(ctx, archived)
	return ids, storeError(err)
}

func (s *storeSource) state(ctx context.Context, id string) (*store.Data, error) {
	nv, vitals, err := s.b.state(ctx, id, view{})
	if err != nil {
		return nil, err
	}
	return withBeats(nv.d, vitals), nil
}

func (s *storeSource) log(ctx context.Context, id string, debug bool) ([]byte, error) {
	b, err := s.b.s.ReadLog(ctx, id, debug)
	return b, storeError(err)
}

func (s *storeSource) watch(ctx context.Context, id string) (<-chan struct{}, error) {
	return s.b.watch(ctx, id)
}

func (s *storeSource) watchList(ctx context.Context) (<-chan struct{}, error) {
	lw, ok := s.b.s.(journal.ListWatcher)
	if !ok {
		return nil, fmt.Errorf("ledger: this store (%T) cannot announce new operations", s.b.s)
	}
	ch, err := lw.WatchAll(ctx)
	return ch, storeError(err)
}

func (s *storeSource) abort(ctx context.Context, id string, by participant) (*store.Data, error) {
	nv, _, err := s.b.apply(ctx, id, view{}, abortOp{who: by, aborted: true})
	if err != nil {
		return nil, err
	}
	return nv.d, nil
}

func (s *storeSource) prune(_ context.Context, keep int) (removed, kept int, err error) {
	p, ok := s.b.s.(interface {
		Prune(keep int) (removed, kept int, err error)
	})
	if !ok {
		return 0, 0, fmt.Errorf("ledger: this store cannot prune its archive")
	}
	return p.Prune(keep)
}

func (s *storeSource) close() error {
	if s.owned {
		return s.b.close()
	}
	return nil
}
