package store_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/store"
)

// fuzzOp is the operation whose state file FuzzDecodeState writes.
const fuzzOp = "20240115T10:30:00.123-dart-0a1b2c3d"

// FuzzDecodeState writes arbitrary bytes as the state file of an operation
// and reads it through Store.Read, the way every reader of the ledger
// decodes it. Reading never panics; it either fails with an error that
// matches ErrCorrupt, or gives a Data whose encoding is what encoding/json
// writes and reads back, through the same path, to the same encoding.
// Seeds: testdata/fuzz/FuzzDecodeState.
func FuzzDecodeState(f *testing.F) {
	dir := f.TempDir()
	s, err := store.Open(dir, store.Options{})
	require.NoError(f, err)
	f.Cleanup(func() { s.Close() })
	path := s.StatePath(fuzzOp)

	f.Fuzz(func(t *testing.T, file []byte) {
		require.NoError(t, os.WriteFile(path, file, 0o644))
		d, err := s.Read(fuzzOp)
		if err != nil {
			require.ErrorIs(t, err, store.ErrCorrupt)
			return
		}
		require.Equal(t, fuzzOp, d.OperationID)
		enc := store.Encode(d)
		want, err := json.MarshalIndent(d, "", "  ")
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, enc), "Encode differs from encoding/json:\n%s\n%s", enc, want)

		require.NoError(t, os.WriteFile(path, enc, 0o644))
		again, err := s.Read(fuzzOp)
		require.NoError(t, err, "the encoding of an accepted state is refused:\n%s", enc)
		assert.Equal(t, string(enc), string(store.Encode(again)), "the encoding does not read back to itself")
	})
}
