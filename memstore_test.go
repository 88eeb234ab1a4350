package ledger_test

import (
	"testing"

	"github.com/tomdist/ledger/journal/journaltest"
)

// TestMemStoreConformance checks that the in-memory store of ExampleOpen
// keeps the contract of package journal, so the example shows a store
// that is right, not only one that runs.
func TestMemStoreConformance(t *testing.T) {
	journaltest.Run(t, func(t testing.TB) journaltest.Pair {
		s := newMemStore()
		return journaltest.Pair{A: s, B: s}
	})
}
