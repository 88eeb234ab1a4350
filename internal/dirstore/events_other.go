//go:build !linux

package dirstore

import (
	"errors"
	"os"
)

// eventsDelivered reports whether the file system of path delivers
// change events for every write; on this platform the store cannot tell,
// and relies on events unless Options.Poll says otherwise.
func eventsDelivered(path string) bool { return true }

// watchLoud fails: on this platform, the watch of every change (which
// wakes for appends too) serves the watchers of loud changes.
func watchLoud(dir string, name func(string), lost, gone func()) (stop func(), err error) {
	return nil, errors.ErrUnsupported
}

// signalLoud does nothing: every append wakes the watchers here.
func signalLoud(f *os.File) {}
