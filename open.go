package ledger

import (
	"errors"

	"github.com/tomdist/ledger/journal"
)

// Open returns a ledger over the journal store s: the rules of every
// change run in this process, as a LocalLedger runs them over its
// directory, so the ledger behaves as the other backends do (sessions,
// calls, heartbeats, crash verdicts, cleanup, the orphan sweep). Its
// participants hold leases of s, and its monitors are woken by the
// watches of s and by the end of the leases they observe. Module
// github.com/tomdist/ledger/etcd opens one over etcd (etcd.Connect); see
// package journal for the contract a store keeps.
//
// The ledger owns s from then on: Close closes it, which ends the leases
// held through it. Give each Ledger a Store of its own. If Open fails, s
// is left open. Of o, the fields of the directory (BasePath, Durable,
// MaxBackups, MaxTrail) and of a server (ServerURL, ServerURLs, Token,
// TLSConfig, RequestTimeout, Retry, Discovery) must be zero or are not
// used: they are the store's business. Survivors do not delete the temp
// resources of a dead process on such a ledger: its registry is not a
// file whose owner the kernel vouches for (see Temporary files).
//
// Worker processes started by ExecFileResultWorker and ExecStdioWorker
// find the ledger if s implements StoreLocator.
func Open(s journal.Store, o Options) (Ledger, error) {
	if s == nil {
		return nil, errors.New("ledger: Open: the store is nil")
	}
	if o.BasePath != "" || o.ServerURL != "" || len(o.ServerURLs) > 0 {
		return nil, errors.New("ledger: Open: Options.BasePath, ServerURL and ServerURLs name other backends; leave them empty")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &storeBackend{s: s, lazy: true}
	c := newClient(o, b)
	c.goTracked(func() { b.sweepLoop(c.life, c.who, o.StaleThreshold) })
	return c, nil
}

// EnvStore is the environment variable that names the kind of store
// ("etcd") of an orchestrator whose ledger was opened with Open over a
// StoreLocator: its workers join with that store's own JoinFromEnv (for
// etcd, etcd.JoinFromEnv), as package ledger cannot open it.
const EnvStore = "LEDGER_STORE"

// StoreLocator is implemented by a journal.Store that worker processes
// can find. A worker started by ExecFileResultWorker or ExecStdioWorker
// on a ledger opened over such a store gets, beside EnvOperationID and
// EnvCallID, the variables WorkerEnv returns, unless the worker's own Env
// sets one of them.
type StoreLocator interface {
	// WorkerEnv returns "KEY=value" entries that tell a process where
	// the store is: EnvStore, set to the kind of the store, and the
	// store's own variables (endpoints, key prefix). Secrets do not
	// belong here.
	WorkerEnv() []string
}

// workerEnv returns the variables that tell a worker where the store is,
// or none.
func (b *storeBackend) workerEnv() []string {
	if l, ok := b.s.(StoreLocator); ok {
		return l.WorkerEnv()
	}
	return nil
}
