package ledger

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// TestCompactionIsSpacedOutByTheStateSize: a snapshot costs in
// proportion to the state, idempotency keys included (64 remote clients
// with 64 keys each made a snapshot of 4,096 keys every 256 records, and
// every client decoded each), so the records between two compactions
// grow with it.
func TestCompactionIsSpacedOutByTheStateSize(t *testing.T) {
	d := &store.Data{}
	assert.Equal(t, journal.Rev(256), compactAfter(d), "a small state")

	d.Keys = map[string][]string{}
	for p := range 64 {
		for k := range maxKeys {
			by := fmt.Sprintf("p%d", p)
			d.Keys[by] = append(d.Keys[by], fmt.Sprintf("key-%d", k))
		}
	}
	assert.GreaterOrEqual(t, compactAfter(d), journal.Rev(64*maxKeys/3), "64 participants' keys")
}
