// Package journal is the storage seam of package ledger: what a store must
// give the ledger so that every participant, on every backend, sees the
// same operations.
//
// An operation is kept as a journal: an append-only sequence of records,
// each one change of its state. The rules of package ledger decide every
// change; a Store only keeps records, in order, and wakes the readers. It
// never looks inside a record's Body: records are opaque to it, and so are
// snapshots. The ledger runs over any Store: the directory store of
// LocalLedger, the etcd store of module github.com/tomdist/ledger/etcd, or
// one of your own, tested with package journaltest.
//
// # The contract
//
// An implementation of Store must keep these promises; journaltest.Run
// checks each of them.
//
//   - Order. The records of an operation have the positions 1, 2, 3, ...
//     with no gap and no position twice. A record, once a call that appended
//     it has returned without error, is never lost, changed or doubled, even
//     if the process that appended it dies right after (with a Durable
//     store, even if the machine does).
//   - Atomic changes. Update calls its function with every record the
//     caller has not seen, and appends what the function returns right after
//     them, all or nothing: no record of anyone else lands between the tail
//     the function saw and the records it returned. A store may call the
//     function more than once (an optimistic store retries when it lost a
//     race); only the Change of the last call is applied. A store that
//     guesses the tail (from a cache of the head, as the etcd store does)
//     must confirm the guess before it returns an error of fn or a zero
//     Change decided on it. An Update whose outcome the store cannot know
//     (the connection broke during the commit) returns an error although
//     its records may have landed: a caller that sends the change again
//     must make it recognisable (the ledger's idempotency keys).
//   - Snapshots. A Change may carry a snapshot of the state after its
//     records. The store may then drop the records up to it; a reader whose
//     position is older than the oldest record kept gets the snapshot in its
//     Tail and starts over from it.
//   - Archive. A Change with Archive set ends the operation: after it, no
//     Update succeeds (ErrArchived), while Read still returns the journal and
//     ReadLog the log. Archived operations are listed apart and pruned, the
//     oldest first, beyond the store's bound.
//   - Logs. The log lines of every record appended are kept, in order, for as
//     long as the operation is (snapshots do not drop them).
//   - Wake-ups. A Watch channel receives a value after every append,
//     snapshot or archive of its operation made once Watch has returned;
//     values are coalesced, never dropped to nothing: after a change, at
//     least one value arrives after it. A store that implements QuietWatcher keeps the same promise on its
//     WatchLoud channels for every change that is not Quiet and appends
//     records or archives.
//   - Liveness. A Lease held by a process ends when the process dies (or,
//     for a store that cannot see processes, when its TTL passes without a
//     Beat); its members' Observe channels then close, promptly, with nobody
//     polling. Release ends it at once. A store may round a TTL up to what
//     its engine grants (etcd: whole seconds, and at least about 1.5 of its
//     election timeouts).
//   - Names. Operation ids and member ids are checked by the ledger before
//     they reach a store (see package ledger); a store must still never
//     write or delete outside its own space whatever ids it is given.
//   - Errors. Unknown operations are ErrNotFound, taken ids ErrExists,
//     archived ones ErrArchived; a context that ends is context.Cause(ctx)
//     or wraps it; a store that cannot be reached returns an error that says
//     so. Errors are never silently turned into success.
package journal

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Errors a Store returns, matched with errors.Is.
var (
	// ErrNotFound is returned for an operation that the store does not
	// have, live or archived.
	ErrNotFound = errors.New("journal: operation not found")
	// ErrExists is returned by Create for an id that is live or archived.
	ErrExists = errors.New("journal: operation already exists")
	// ErrArchived is returned by Update for an operation that has been
	// archived: its journal is closed.
	ErrArchived = errors.New("journal: operation archived")
	// ErrCorrupt is returned when stored data does not have the store's
	// form (a torn or foreign file, a record that fails its checksum in the
	// middle of a journal). The data is left as it is.
	ErrCorrupt = errors.New("journal: corrupt journal")
	// ErrLocked is returned when a store could not get exclusive access to
	// an operation before the context ended.
	ErrLocked = errors.New("journal: operation locked")
	// ErrNotObservable is returned by Observe for a member whose lease the
	// store cannot see.
	ErrNotObservable = errors.New("journal: member not observable")
)

// Rev is a position in an operation's journal: how many records it holds
// up to and including one. The first record is at 1; 0 is the position of
// a reader that has seen nothing.
type Rev uint64

// String returns the decimal form of r.
func (r Rev) String() string { return strconv.FormatUint(uint64(r), 10) }

// Record is one change of an operation.
type Record struct {
	// Rev is the record's position. Update and Create set it; it is
	// ignored in a Change.
	Rev Rev
	// Time is when the change was made, by the clock of the process that
	// made it.
	Time time.Time
	// Body is the change: one JSON object without line breaks, written by
	// the ledger and opaque to the store.
	Body []byte
	// Log are the lines the change adds to the operation's log.
	Log []LogLine
}

// LogLine is one line of an operation's log, without its time (the time of
// its record).
type LogLine struct {
	Level       string // DEBUG, INFO, WARNING or ERROR
	Participant string // the participant that made the change
	Message     string // what happened; one line
}

// Tail is what a reader has not seen of a journal.
type Tail struct {
	// Snapshot, when not nil, is the state at Base: the records before
	// Base+1 are gone from the store and the reader starts over from it,
	// dropping what it knew.
	Snapshot []byte
	// Base is the position of the store's snapshot of the journal: the
	// records up to it may be gone. Zero when the store has none.
	Base Rev
	// Records are the records after the reader's position (after Base,
	// with a Snapshot), in order.
	Records []Record
	// Archived reports that the operation is archived: no record will
	// follow these.
	Archived bool
	// Source names what the tail was read from (a file, a key prefix),
	// for the messages of errors found in it.
	Source string
}

// End returns the position a reader that was at after reaches by reading
// t: the Rev of its last record, or else Base (with a Snapshot), or else
// after.
func (t Tail) End(after Rev) Rev {
	switch {
	case len(t.Records) > 0:
		return t.Records[len(t.Records)-1].Rev
	case t.Snapshot != nil:
		return t.Base
	}
	return after
}

// Change is what the function given to Update decides: the records to
// append, and what to do with the journal after them. The zero Change
// changes nothing.
type Change struct {
	// Records are appended, in order, after the tail the function saw.
	Records []Record
	// Snapshot, when not nil, is the state after Records, which the
	// store keeps so that it may drop the records before it (compaction),
	// and from which readers that are too far behind start over.
	Snapshot []byte
	// Archive ends the operation after Records: no record can follow. It
	// requires a Snapshot: the state archived.
	Archive bool
	// Quiet says that the change is routine: nobody needs waking for it.
	// It is seen at the reader's next read. A Watch channel still
	// receives a value for it; a WatchLoud channel (see QuietWatcher) need
	// not. The ledger marks quiet the changes a participant does not react
	// to, such as a call that starts or ends on a running operation.
	Quiet bool
}

// Member names one process taking part in an operation.
type Member struct {
	ID   string // the participant id
	PID  int    // the process id
	Host string // the host the process runs on
	// TTL is how long the member may go without a Beat and still be
	// alive: its stale threshold. Stores that cannot see processes end
	// its lease after it.
	TTL time.Duration
}

// Key returns "{id}/{pid}@{host}", the name of m in logs and errors.
func (m Member) Key() string { return m.ID + "/" + strconv.Itoa(m.PID) + "@" + m.Host }

// A Lease proves its member alive to the others as long as the process
// that holds it lives.
type Lease interface {
	// Beat records that the member is alive and not hung now.
	Beat(ctx context.Context) error
	// Release ends the lease at once: observers see the member gone.
	Release() error
}

// Store keeps the journals of operations. Its methods are safe for
// concurrent use; several Stores, in one process or many, may share the
// same underlying storage.
type Store interface {
	// Create starts the journal of operation id with c. It fails with
	// ErrExists if the id is live or archived.
	Create(ctx context.Context, id string, c Change) (Tail, error)

	// Update appends a change to the journal of id: fn is called with the
	// records after position after (or a snapshot and the records after
	// it) and returns the Change; its records are appended right after
	// the tail fn saw, or nothing is. An error of fn is returned as it is,
	// and nothing is appended. fn may run more than once. Update returns
	// the tail fn saw, followed by the records appended (with their Rev
	// and Time set). An archived operation is ErrArchived.
	Update(ctx context.Context, id string, after Rev, fn func(Tail) (Change, error)) (Tail, error)

	// Read returns the records of id after position after, live or
	// archived.
	Read(ctx context.Context, id string, after Rev) (Tail, error)

	// ReadLog returns the log of id, live or archived, one line per log
	// line, "<time> [LEVEL] <participant> <message>" (see FormatLogLine).
	// debug selects the DEBUG lines instead of the others.
	ReadLog(ctx context.Context, id string, debug bool) ([]byte, error)

	// Watch returns a channel that receives a value whenever the journal
	// of id may have changed (see the contract). It is closed when ctx
	// ends.
	Watch(ctx context.Context, id string) (<-chan struct{}, error)

	// List returns the ids of the live operations, or with archived the
	// archived ones, oldest first.
	List(ctx context.Context, archived bool) ([]string, error)

	// Hold takes a lease for member m of operation id, held by this
	// process.
	Hold(ctx context.Context, id string, m Member) (Lease, error)

	// Beat records a heartbeat of m, a member that holds no lease in this
	// process (a remote client of a ledger server); whether and how it
	// keeps m alive is the store's (see Vital).
	Beat(ctx context.Context, id string, m Member) error

	// Vitals returns what the store knows of the liveness of the members
	// of id.
	Vitals(ctx context.Context, id string) ([]Vital, error)

	// Observe returns a channel that is closed when the lease of m ends:
	// m released it, died, or (for stores that see no processes) missed
	// its TTL. If m holds no lease, the channel is closed at once. A store
	// that cannot see leases of m's host (a directory store and a member
	// of another host) returns ErrNotObservable: m is then judged by its
	// beats (Vitals). The channel stays open when ctx ends; observing stops
	// then.
	Observe(ctx context.Context, id string, m Member) (<-chan struct{}, error)

	// Close releases what the store holds. Leases held through it end.
	Close() error
}

// Vital is what a store knows of one member's liveness.
type Vital struct {
	Member
	// Lease reports that the member took a lease; Held, whether it still
	// holds it: a lease that is no longer held ended.
	Lease bool
	// Held reports that the member holds a lease now.
	Held bool
	// Beat is the time of its last heartbeat, by the clock of the
	// process that recorded it; zero if none was recorded. Observers
	// compare it only with earlier values of the same member.
	Beat time.Time
}

// FormatLogLine returns the log line l of a record made at t, in the form
// of the Dart ledger's logs: "<RFC 3339 UTC with milliseconds> [LEVEL]
// <participant> <message>".
func FormatLogLine(t time.Time, l LogLine) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") + " [" + l.Level + "] " + l.Participant + " " + l.Message
}
