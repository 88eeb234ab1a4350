package ledger

import "github.com/tomdist/ledger/internal/store"

// SetClockSkew shifts the wall clock this test process writes into the
// ledger (test seam; see store.SetClockSkew).
var SetClockSkew = store.SetClockSkew

// SetWriteFault makes every later state file write of this process fail
// with the error f returns for its path, if any (test seam; see
// store.SetWriteFault).
var SetWriteFault = store.SetWriteFault
