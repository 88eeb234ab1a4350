package journal

import "context"

// ListWatcher is implemented by stores that can announce the changes of
// all their operations, new ones included. The dashboard of the ledger
// server and `ledger watch` without an operation use it; over a store
// without it, they cannot follow the list of operations.
type ListWatcher interface {
	// WatchAll returns a channel that receives a value whenever an
	// operation of the store may have been created, changed or archived;
	// values are coalesced, as those of Store.Watch. It is closed when ctx
	// ends.
	WatchAll(ctx context.Context) (<-chan struct{}, error)
}

// QuietWatcher is implemented by stores that can spare a watcher the
// changes marked Quiet. The ledger's participants, which react only to
// what is not quiet (an abort, a failure, completion, a participant that
// joins or goes), watch through it where the store has it, so that many
// processes doing calls on one operation do not wake each other for
// every call; viewers, which show every change, use Store.Watch.
type QuietWatcher interface {
	// WatchLoud is Store.Watch for the changes that are not Quiet: its
	// channel receives a value after every such change that appends
	// records or archives operation id, and may receive none after a
	// Quiet change or a snapshot alone (the ledger makes no loud change
	// without a record). It is closed when ctx ends.
	WatchLoud(ctx context.Context, id string) (<-chan struct{}, error)
}
