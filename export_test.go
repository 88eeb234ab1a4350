package ledger

import (
	"context"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/store"
)

// SetClockSkew shifts the wall clock this test process writes into the
// ledger (test seam; see store.SetClockSkew).
var SetClockSkew = store.SetClockSkew

// SetWriteFault makes every later journal append of this process fail
// with the error f returns for the journal's path, if any (test seam; see
// dirstore.SetWriteFault).
var SetWriteFault = dirstore.SetWriteFault

// Sweep runs one orphan sweep of l's directory, as the sweep loop of a
// LocalLedger does when it opens and then every stale threshold.
func Sweep(ctx context.Context, l *LocalLedger) {
	l.client.b.(*storeBackend).sweep(ctx, l.who)
}

// MonitorRead returns a channel closed once the monitor of op has read
// the operation for the first time: a change made after that is news to
// it, which it takes in only when woken.
func MonitorRead(op *Operation) <-chan struct{} { return op.st.mon.read }
