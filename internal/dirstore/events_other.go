//go:build !linux

package dirstore

// eventsDelivered reports whether the file system of path delivers
// change events for every write; on this platform the store cannot tell,
// and relies on events unless Options.Poll says otherwise.
func eventsDelivered(path string) bool { return true }
