package ledger_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestDotOperationIDRefused checks that "." is no operation id on any
// backend: its archive would be backup/ itself.
func TestDotOperationIDRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		l := e.Open("alice", ledger.Options{})
		_, err := l.JoinOperation(context.Background(), ".", ledger.JoinOptions{})
		require.ErrorIs(t, err, ledger.ErrInvalidID)
		ents, err := os.ReadDir(e.dir)
		require.NoError(t, err)
		assert.Empty(t, ents, "files written for the id \".\"")
	})
}
