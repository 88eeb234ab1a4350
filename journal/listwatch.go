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
