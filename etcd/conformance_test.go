package etcd_test

import (
	"testing"

	"github.com/tomdist/ledger/journal/journaltest"
)

// TestConformance runs the journal contract's suite on two stores, two
// etcd clients as two processes would have, over a fresh prefix.
func TestConformance(t *testing.T) {
	journaltest.Run(t, func(t testing.TB) journaltest.Pair {
		c := config(t)
		return journaltest.Pair{A: openStore(t, c), B: openStore(t, c)}
	})
}
