package ledger_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestInvalidStateIsCorruptAndKept writes state files that parse as JSON
// but lack required fields or hold bad values: joining and changing the
// operation fail with ErrCorruptLedger naming the file and the field, and
// the file keeps its bytes.
func TestInvalidStateIsCorruptAndKept(t *testing.T) {
	for _, c := range []struct {
		name, field string
		content     func(id string, valid []byte) []byte
	}{
		{"operationId alone", "operationState", func(id string, _ []byte) []byte {
			return []byte(`{"operationId": "` + id + `"}`)
		}},
		{"operationState exploded", "operationState", func(_ string, valid []byte) []byte {
			return []byte(strings.Replace(string(valid), `"operationState": "running"`, `"operationState": "exploded"`, 1))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := localEnv(t)
			ctx := context.Background()
			alice := e.Open("alice", ledger.Options{})
			op, err := alice.CreateOperation(ctx, ledger.CreateOptions{})
			require.NoError(t, err)
			path := filepath.Join(e.dir, op.ID()+".operation.json")
			valid, err := os.ReadFile(path)
			require.NoError(t, err)
			bad := c.content(op.ID(), valid)
			require.NotEqual(t, valid, bad)
			require.NoError(t, os.WriteFile(path, bad, 0o644))

			bob := e.Open("bob", ledger.Options{})
			_, err = bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
			checkCorrupt(t, "JoinOperation", err, path, c.field)
			_, err = ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
			checkCorrupt(t, "StartCall", err, path, c.field)

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(bad), string(after), "the invalid state file was rewritten")
		})
	}
}

// checkCorrupt checks that err is a *CorruptError naming path and field.
func checkCorrupt(t *testing.T, what string, err error, path, field string) {
	t.Helper()
	var ce *ledger.CorruptError
	if assert.ErrorIs(t, err, ledger.ErrCorruptLedger, what) && assert.True(t, errors.As(err, &ce), what) {
		assert.Equal(t, path, ce.Path, what)
		assert.Equal(t, field, ce.Field, what)
		assert.Contains(t, err.Error(), path, what)
		assert.Contains(t, err.Error(), field, what)
	}
}
