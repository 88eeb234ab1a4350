package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// fuzzDartOp is the operation whose state document FuzzDecodeState writes.
const fuzzDartOp = "20240115T10:30:00.123-dart-0a1b2c3d"

// FuzzDecodeState writes arbitrary bytes as the state document of an
// operation without a journal (as the Dart ledger writes one) and reads it
// through a Viewer, the way every reader of the ledger decodes documents
// and snapshots. Reading never panics; it either fails with an error that
// matches ErrCorruptLedger, or gives a Data whose encoding is what
// encoding/json writes and reads back, through the same path, to itself.
// Seeds: testdata/fuzz/FuzzDecodeState.
func FuzzDecodeState(f *testing.F) {
	dir := f.TempDir()
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(f, err)
	f.Cleanup(func() { v.Close() })
	path := filepath.Join(dir, fuzzDartOp+".operation.json")
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, file []byte) {
		require.NoError(t, os.WriteFile(path, file, 0o644))
		d, err := v.State(ctx, fuzzDartOp)
		if err != nil {
			require.ErrorIs(t, err, ledger.ErrCorruptLedger)
			return
		}
		require.Equal(t, fuzzDartOp, d.OperationID)
		enc, err := json.MarshalIndent(d, "", "  ")
		require.NoError(t, err)

		require.NoError(t, os.WriteFile(path, enc, 0o644))
		again, err := v.State(ctx, fuzzDartOp)
		require.NoError(t, err, "the encoding of an accepted state is refused:\n%s", enc)
		enc2, err := json.MarshalIndent(again, "", "  ")
		require.NoError(t, err)
		assert.True(t, bytes.Equal(enc, enc2), "the encoding does not read back to itself:\n%s\n%s", enc, enc2)
	})
}
