package ledger

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// Defaults of Options.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultStaleThreshold    = 15 * time.Second
	DefaultMaxBackups        = 20
	DefaultMaxTrail          = 100
	DefaultLivenessPoll      = 200 * time.Millisecond
	DefaultPort              = 19880
)

// Options configure a ledger. The zero value is valid: it finds a ledger
// server on this host (see Discovery) and names the participant after the
// host and process.
type Options struct {
	// ParticipantID names this participant in the ledger. It must match
	// ^[A-Za-z0-9_.-]{1,64}$. Zero means "{host}-{pid}".
	ParticipantID string

	// ParticipantPID is the pid written into the ledger. Zero means
	// os.Getpid().
	ParticipantPID int

	// BasePath is the ledger directory of the local backend. When set, the
	// ledger is a *LocalLedger over this directory.
	BasePath string

	// ServerURL is the base URL of a ledger server (remote backend). Zero,
	// with BasePath and ServerURLs empty, means discovery. Setting it and
	// BasePath is an error.
	ServerURL string

	// ServerURLs are more servers of the same ledger (several `ledger
	// serve` fronts of one store, such as etcd), tried after ServerURL:
	// a RemoteClient moves to the next when a request or stream cannot
	// reach the one it uses (see RemoteClient).
	ServerURLs []string

	// Callback receives ledger-wide events.
	Callback LedgerCallback

	// HeartbeatInterval is the time between heartbeats of this
	// participant. It is written into the participant's record, and the
	// others judge the participant by it. Zero means 5s.
	HeartbeatInterval time.Duration

	// StaleThreshold is how long this participant may be silent (paused,
	// hung, cut off) and still not be declared crashed. It is written into
	// the participant's record with HeartbeatInterval: an observer
	// declares the participant crashed once it has seen no new heartbeat
	// of it for the participant's StaleThreshold plus 1.25 of its
	// HeartbeatInterval, the longest gap between two beats of a healthy
	// participant (jitter included), whatever the observer's own settings,
	// so a pause shorter than StaleThreshold is never a crash. A record
	// without settings (the Dart ledger writes none) is judged by the
	// defaults. It must exceed HeartbeatInterval. Zero means 15s, or 3
	// HeartbeatIntervals if that is longer.
	StaleThreshold time.Duration

	// LivenessPoll is how often a ledger looks for changes where nothing
	// tells it of them: a LocalLedger with PollDirectory, and a
	// RemoteClient whose server (or a proxy in between) cannot stream.
	// Zero means 200ms.
	LivenessPoll time.Duration

	// PollDirectory makes a LocalLedger poll its directory every
	// LivenessPoll instead of waiting for the file system's change
	// events. Set it for a directory that processes on other machines
	// write through a network file system that this host's events do
	// not cover. On Linux the common ones (NFS, SMB, 9P, Ceph, FUSE,
	// Lustre, GPFS, AFS) are recognised and polled every 100ms without
	// it; elsewhere events are trusted unless it is set. Peers on this
	// host are seen to die at once either way (their liveness locks).
	PollDirectory bool

	// MaxBackups is how many archived operations are kept. Zero means 20;
	// negative keeps all.
	MaxBackups int

	// MaxTrail is how many trail snapshots are kept per operation. Zero
	// means 100; negative keeps none.
	MaxTrail int

	// Durable makes every change of the ledger directory reach the disk
	// before it returns (the journal is fdatasynced after each append,
	// files and directories when they are renamed), so a change survives
	// a power cut. Zero means off: a change survives the crash of any
	// process, not of the machine.
	Durable bool

	// NoSignalHandler keeps the ledger from handling SIGINT and SIGTERM
	// while operations are open. Programs that handle signals themselves
	// should set it and call Cleanup().Run.
	NoSignalHandler bool

	// TempRoots are the directories below which temp resources may lie.
	// RegisterTempResource refuses (ErrInvalidArgument) a path whose
	// cleaned absolute form is not below one of them, and a LocalLedger
	// deletes the temp resources of a crashed process of its user only
	// below them (see the package doc, Temporary files). Symbolic links
	// in a root itself are followed; below a root, none ever is. Relative
	// roots are taken from the working directory of Connect. Zero means
	// the system temp directory, os.TempDir().
	TempRoots []string

	// SignalGrace bounds how long the cleanup callbacks may run after
	// SIGINT or SIGTERM before the process dies anyway (see
	// CleanupHandler). Zero means 5s.
	SignalGrace time.Duration

	// LockTimeout bounds each call that reads or writes the ledger (the
	// wait for an operation's lock included) when the caller's context has
	// no deadline. Zero means 30s.
	LockTimeout time.Duration

	// Token is the bearer token a RemoteClient sends to the ledger server.
	// Zero means the environment variable LEDGER_TOKEN; if that is empty
	// too, no token is sent.
	Token string

	// TLSConfig configures https connections to a ledger server, for
	// example RootCAs for a private certificate. Zero means the system's
	// roots.
	TLSConfig *tls.Config

	// RequestTimeout bounds one HTTP request (one attempt) of a
	// RemoteClient. Zero means 10s.
	RequestTimeout time.Duration

	// Retry says how a RemoteClient retries a request that failed on the
	// way (a connection error, a timed-out attempt, a 503). Every request
	// is retried, changes too, with the same idempotency key. The zero
	// value sends a request at most DefaultRetryAttempts (8) times; see
	// RetryPolicy.
	Retry RetryPolicy

	// Discovery configures how a ledger server is found when ServerURL and
	// BasePath are empty. The zero value probes 127.0.0.1 and localhost on
	// port 19880, after LEDGER_SERVER_URL; see DiscoveryOptions.
	Discovery DiscoveryOptions

	// Logger receives the ledger's own diagnostics: heartbeat errors,
	// crash verdicts this process makes, retried requests and reconnected
	// streams of a RemoteClient (see logging.go for the messages). Zero
	// means none.
	Logger *slog.Logger
}

// LedgerCallback receives ledger-wide events. Every field may be nil.
// Callbacks run on the goroutine that caused the event and must not block
// for long. OnLogLine and OnBackupCreated are called by a LocalLedger,
// whose directory store writes the logs and archives; a RemoteClient and
// a ledger from Open do not call them.
type LedgerCallback struct {
	// OnBackupCreated is called with the directory of an archived operation.
	OnBackupCreated func(operationID, dir string)
	// OnLogLine is called with every line this process writes to a log.
	OnLogLine func(operationID, line string)
	// OnGlobalHeartbeatError is called with every heartbeat error of every
	// operation of this ledger.
	OnGlobalHeartbeatError func(operationID string, err *HeartbeatError)
}

// withDefaults validates o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.BasePath != "" && (o.ServerURL != "" || len(o.ServerURLs) > 0) {
		return o, errors.New("ledger: Options.BasePath and Options.ServerURL are both set; choose one backend")
	}
	if o.ParticipantID == "" {
		o.ParticipantID = defaultParticipantID()
	}
	if err := checkParticipantID(o.ParticipantID); err != nil {
		return o, fmt.Errorf("ledger: Options.ParticipantID: %w", err)
	}
	if o.ParticipantPID < 0 {
		return o, fmt.Errorf("ledger: Options.ParticipantPID (%d) must not be negative", o.ParticipantPID)
	}
	if o.ParticipantPID == 0 {
		o.ParticipantPID = os.Getpid()
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HeartbeatInterval", o.HeartbeatInterval},
		{"StaleThreshold", o.StaleThreshold},
		{"LivenessPoll", o.LivenessPoll},
		{"LockTimeout", o.LockTimeout},
		{"SignalGrace", o.SignalGrace},
	} {
		if d.v < 0 {
			return o, fmt.Errorf("ledger: Options.%s (%v) must not be negative", d.name, d.v)
		}
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.HeartbeatInterval < time.Millisecond || o.LivenessPoll != 0 && o.LivenessPoll < time.Millisecond {
		return o, fmt.Errorf("ledger: Options.HeartbeatInterval (%v) and LivenessPoll (%v) must be at least 1ms", o.HeartbeatInterval, o.LivenessPoll)
	}
	if o.StaleThreshold == 0 {
		o.StaleThreshold = max(DefaultStaleThreshold, 3*o.HeartbeatInterval)
	}
	if o.StaleThreshold <= o.HeartbeatInterval {
		return o, fmt.Errorf("ledger: Options.StaleThreshold (%v) must exceed HeartbeatInterval (%v)", o.StaleThreshold, o.HeartbeatInterval)
	}
	if o.LivenessPoll == 0 {
		o.LivenessPoll = DefaultLivenessPoll
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Second
	}
	if o.SignalGrace == 0 {
		o.SignalGrace = DefaultSignalGrace
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	roots, err := tempRoots(o.TempRoots)
	if err != nil {
		return o, err
	}
	o.TempRoots = roots
	o.MaxBackups = keep(o.MaxBackups, DefaultMaxBackups)
	o.MaxTrail = keep(o.MaxTrail, DefaultMaxTrail)
	return o, nil
}

// tempRoots returns the roots of Options.TempRoots in a new slice, cleaned
// and absolute; none means the system temp directory.
func tempRoots(roots []string) ([]string, error) {
	if len(roots) == 0 {
		roots = []string{os.TempDir()}
	}
	out := make([]string, len(roots))
	for i, r := range roots {
		if r == "" || strings.ContainsRune(r, 0) {
			return nil, fmt.Errorf("ledger: Options.TempRoots[%d] (%q) is not a directory name", i, r)
		}
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("ledger: Options.TempRoots[%d]: %w", i, err)
		}
		out[i] = abs
	}
	return out, nil
}

// keep turns a count option into the store's: zero means def, and a
// negative count becomes 0, which the store reads as "no trail" for
// MaxTrail and "never prune" for MaxBackups.
func keep(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

func defaultParticipantID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, host)
	host = strings.Trim(host, "_")
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = "p"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// Ledger is a connection to a ledger, local or remote. It is safe for
// concurrent use.
type Ledger interface {
	// CreateOperation starts an operation with this participant as its
	// initiator.
	CreateOperation(ctx context.Context, opts CreateOptions) (*Operation, error)
	// JoinOperation joins an existing operation; each join is a session.
	JoinOperation(ctx context.Context, operationID string, opts JoinOptions) (*Operation, error)
	// ParticipantID returns the id this ledger acts under.
	ParticipantID() string
	// Close stops every goroutine the ledger started, cancels its spawned
	// calls and waits for them. Then its open sessions leave; where a call
	// of StartCall was never ended, the process reports itself crashed so
	// that the others react at once.
	Close() error
}

// CreateOptions configure CreateOperation. The zero value is valid.
type CreateOptions struct {
	Description string            // free text written into the state
	Callback    OperationCallback // events of this session
}

// JoinOptions configure JoinOperation. The zero value is valid.
type JoinOptions struct {
	Callback OperationCallback // events of this session
}

// Connect returns a ledger: a *LocalLedger when o.BasePath is set, else a
// *RemoteClient for o.ServerURL and o.ServerURLs, or for the server
// discovery finds. (A ledger over another store, such as etcd, is opened
// with Open, or with the Connect of the store's module.)
func Connect(ctx context.Context, o Options) (Ledger, error) {
	if o.BasePath != "" && (o.ServerURL != "" || len(o.ServerURLs) > 0) {
		_, err := o.withDefaults()
		return nil, err
	}
	// Return a nil interface, not a nil pointer in one, on error.
	if o.BasePath != "" {
		l, err := NewLocalLedger(o)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	l, err := NewRemoteClient(ctx, o)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// participant names one process taking part, with what the others must
// know to judge it.
type participant struct {
	ID   string
	PID  int
	Host string

	// Interval and Stale are the participant's own heartbeat settings,
	// which create and join write into its record for the others to judge
	// it by. Zero, for a participant known by name only (a victim) or a
	// client that does not send them, writes none: the defaults apply.
	Interval, Stale time.Duration
	// viaServer marks a participant that a ledger server acts for: it
	// holds no lease (its record says remote), its temp resources are
	// recorded as registered through the server, and a crash it reports
	// leaves the victim's temp records listed, as it deletes none. Only
	// the server sets it.
	viaServer bool
}

// participantOf names the participant process of a record.
func participantOf(p *store.Participant) participant {
	return participant{ID: p.ParticipantID, PID: p.PID, Host: p.Host}
}

func (p participant) key() string { return store.Key(p.ID, p.PID, p.Host) }

// member returns p as a member of a journal store, with its TTL.
func (p participant) member(ttl time.Duration) journal.Member {
	return journal.Member{ID: p.ID, PID: p.PID, Host: p.Host, TTL: ttl}
}

var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
})

// backend is how the client core reaches a ledger: a journal store, which
// the rules run over in this process (storeBackend: LocalLedger, and
// ledgers over other stores), or a ledger server, which runs them
// (RemoteClient). Every change names the participant it acts for, so
// that a server can serve many participants without remembering any of
// them. The core keeps a view of each operation: backends are given the
// view of their caller and return a newer one.
type backend interface {
	// create creates an operation.
	create(ctx context.Context, c createOp) (view, error)
	// apply carries out a change on operation id for a caller whose view
	// is v, and returns the view after it.
	apply(ctx context.Context, id string, v view, c change) (view, outcome, error)
	// read returns the view of operation id, live or archived, after v.
	read(ctx context.Context, id string, v view) (view, error)
	// watchLoud returns a channel that receives a value whenever
	// operation id may have changed in a way its participants react to
	// (a change that is not quiet, see quiet); it may wake for the others
	// too. It is closed when ctx ends.
	watchLoud(ctx context.Context, id string) (<-chan struct{}, error)
	// heartbeat proves who alive (through its lease, on a store that has
	// one) and returns what is known of the liveness of every member and
	// the view after v.
	heartbeat(ctx context.Context, id string, who participant, lease journal.Lease, v view) ([]journal.Vital, view, error)
	// state returns the view after v and the liveness of every member.
	state(ctx context.Context, id string, v view) (view, []journal.Vital, error)
	// close releases what the backend holds.
	close() error
}

// leaseBackend is implemented by backends whose participants hold
// leases: a process takes one before it creates or joins, and the others
// observe it, so that its death is seen when it happens.
type leaseBackend interface {
	// hold takes the lease of who on operation id.
	hold(ctx context.Context, id string, who participant, ttl time.Duration) (journal.Lease, error)
	// observe returns a channel closed when the lease of p ends; an error
	// when the store cannot see p's leases.
	observe(ctx context.Context, id string, p participant) (<-chan struct{}, error)
}

// frameKind says how a frame came and went, which decides the log events.
type frameKind int

const (
	frameCall    frameKind = iota // StartCall: CALL_STARTED, CALL_ENDED
	frameSpawned                  // SpawnCall: CALL_SPAWNED, CALL_COMPLETED
	frameRaw                      // CreateCallFrame/DeleteCallFrame: no events
)

// frameSpec describes a new call frame.
type frameSpec struct {
	CallID      string
	Description string
	FailOnCrash bool
	Kind        frameKind
}

// client is the core that LocalLedger and RemoteClient share: sessions,
// calls, heartbeats and failure handling, over a backend.
type client struct {
	opts Options
	b    backend
	who  participant

	// life is cancelled by Close with ErrClosed; every context the client
	// hands to work derives from it.
	life   context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // every goroutine the client and its operations start

	openMu sync.Mutex // serialises the opening of sessions

	mu     sync.Mutex // guards ops, closed
	ops    map[string]*opState
	closed bool
}

func newClient(o Options, b backend) *client {
	life, cancel := context.WithCancelCause(context.Background())
	return &client{
		opts: o,
		b:    b,
		who: participant{
			ID: o.ParticipantID, PID: o.ParticipantPID, Host: hostname(),
			Interval: o.HeartbeatInterval, Stale: o.StaleThreshold,
		},
		life:   life,
		cancel: cancel,
		ops:    make(map[string]*opState),
	}
}

// ParticipantID returns the id this ledger acts under.
func (c *client) ParticipantID() string { return c.who.ID }

// Close stops every goroutine the ledger started, cancels its spawned calls
// (their contexts end with ErrClosed) and waits for them. Then each open
// operation is settled: with no call of this process still running, its
// sessions leave; with a call still running (a Call that was never ended),
// the process reports itself crashed, so that the others react at once as
// they would to a kill. Close is idempotent.
func (c *client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	ops := make([]*opState, 0, len(c.ops))
	for _, st := range c.ops {
		ops = append(ops, st)
	}
	c.mu.Unlock()

	// Stop everything first: monitors exit, spawned calls see ErrClosed and
	// end. Then what is left of each operation is settled in the ledger.
	c.cancel(ErrClosed)
	c.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.LockTimeout)
	defer cancel()
	var errs []error
	for _, st := range ops {
		errs = append(errs, st.closeAll(ctx))
	}
	errs = append(errs, c.b.close())
	return errors.Join(errs...)
}

// goTracked runs f in a goroutine that Close waits for, unless the client
// is closed; it reports whether f was started.
func (c *client) goTracked(f func()) bool {
	if !c.hold() {
		return false
	}
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// hold counts a goroutine that Close will wait for, unless the client is
// closed: a count added while Close waits would race with it. The caller
// starts the goroutine, or calls c.wg.Done.
func (c *client) hold() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// ctx bounds a call with the lock timeout when the caller's context has no
// deadline.
func (c *client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.opts.LockTimeout)
}

// temps returns what deletes the temp resources of dead processes for
// the client: a LocalLedger's tempCleaner, or nil.
func (c *client) temps() *tempCleaner {
	if b, ok := c.b.(*storeBackend); ok {
		return b.temps
	}
	return nil
}
