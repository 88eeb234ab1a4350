package dirstore

import "context"

// allOps is the key of the subscribers of WatchAll among those of Watch:
// no operation id is empty.
const allOps = ""

// WatchAll implements journal.ListWatcher: the channel receives a value
// whenever the journal of any operation of the directory may have been
// created, changed, archived or removed. It is closed when ctx ends.
func (d *Dir) WatchAll(ctx context.Context) (<-chan struct{}, error) {
	return d.watch.add(ctx, allOps, false)
}
