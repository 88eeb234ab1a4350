package ledger

import "github.com/tomdist/ledger/internal/store"

// SetClockSkew shifts the wall clock this test process writes into the
// ledger (test seam; see store.SetClockSkew).
var SetClockSkew = store.SetClockSkew
