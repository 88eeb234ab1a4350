package ledger

import (
	"context"

	"github.com/tomdist/ledger/internal/store"
)

// SetClockSkew shifts the wall clock this test process writes into the
// ledger (test seam; see store.SetClockSkew).
var SetClockSkew = store.SetClockSkew

// SetWriteFault makes every later state file write of this process fail
// with the error f returns for its path, if any (test seam; see
// store.SetWriteFault).
var SetWriteFault = store.SetWriteFault

// Sweep runs one orphan sweep of l's directory, as the sweep loop of a
// LocalLedger does when it opens and then every stale threshold.
func Sweep(ctx context.Context, l *LocalLedger) {
	(&localBackend{st: l.store, temps: newTempCleaner(l.store, l.opts)}).sweep(ctx, l.who)
}
