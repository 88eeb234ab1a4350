package ledger

import (
	"context"

	"github.com/tomdist/ledger/internal/store"
)

// SetClockSkew shifts the wall clock this test process writes into the
// ledger (test seam; see store.SetClockSkew).
var SetClockSkew = store.SetClockSkew

// Sweep runs one orphan sweep of l's directory, as the sweep loop of a
// LocalLedger does when it opens and then every stale threshold.
func Sweep(ctx context.Context, l *LocalLedger) {
	(&localBackend{st: l.store}).sweep(ctx, l.who, l.opts.StaleThreshold)
}
