package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestInvalidStateIsCorruptAndKept writes state documents, as the Dart
// ledger writes them (a document without a journal), that parse as JSON
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
			id := "20240115T10:30:00.123-dart-0a1b2c3d"
			path := filepath.Join(e.dir, id+".operation.json")
			valid := []byte(dartState(id))
			bad := c.content(id, valid)
			require.NotEqual(t, valid, bad)
			require.NoError(t, os.WriteFile(path, bad, 0o644))

			bob := e.Open("bob", ledger.Options{})
			_, err := bob.JoinOperation(ctx, id, ledger.JoinOptions{})
			checkCorrupt(t, "JoinOperation", err, path, c.field)
			v, err := ledger.OpenViewer(ledger.Options{BasePath: e.dir})
			require.NoError(t, err)
			defer v.Close()
			_, err = v.State(ctx, id)
			checkCorrupt(t, "Viewer.State", err, path, c.field)

			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(bad), string(after), "the invalid state file was rewritten")
			_, err = os.Stat(filepath.Join(e.dir, id+".operation.journal"))
			assert.ErrorIs(t, err, os.ErrNotExist, "an invalid document was given a journal")
		})
	}
}

// checkCorrupt checks that err is a *CorruptError naming path and field.
func checkCorrupt(t *testing.T, what string, err error, path, field string) {
	t.Helper()
	var ce *ledger.CorruptError
	if assert.ErrorIs(t, err, ledger.ErrCorruptLedger, what) && assert.ErrorAs(t, err, &ce, what) {
		assert.Equal(t, path, ce.Path, what)
		assert.Equal(t, field, ce.Field, what)
		assert.Contains(t, err.Error(), path, what)
		assert.Contains(t, err.Error(), field, what)
	}
}

// dartState is a valid state document as the Dart ledger writes it.
func dartState(id string) string {
	return `{
  "operationId": "` + id + `",
  "initiatorId": "dart",
  "startTime": "2024-01-15T10:30:00.123",
  "operationState": "running",
  "aborted": false,
  "lastHeartbeat": "2024-01-15T10:30:05.456",
  "callFrames": [],
  "tempResources": []
}`
}

// TestInvalidSnapshotIsCorrupt: a journal whose snapshot is not a valid
// state is corrupt, named with its field, and left as it is.
func TestInvalidSnapshotIsCorrupt(t *testing.T) {
	e := localEnv(t)
	ctx := context.Background()
	id := "20240115T10:30:00.123-dart-0a1b2c3e"
	doc := filepath.Join(e.dir, id+".operation.json")
	require.NoError(t, os.WriteFile(doc, []byte(dartState(id)), 0o644))
	bob := e.Open("bob", ledger.Options{})
	op, err := bob.JoinOperation(ctx, id, ledger.JoinOptions{}) // gives the document a journal
	require.NoError(t, err)
	require.NoError(t, op.Leave(ctx, ledger.LeaveOptions{}))

	path := filepath.Join(e.dir, id+".operation.journal")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	// Break the snapshot and fix its checksum and length, as a forger would.
	bad := forgeSnapshot(t, b, `"operationState": "running"`, `"operationState": "exploded"`)
	require.NoError(t, os.WriteFile(path, bad, 0o644))

	_, err = e.Open("carol", ledger.Options{}).JoinOperation(ctx, id, ledger.JoinOptions{})
	checkCorrupt(t, "JoinOperation", err, path, "operationState")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(bad), string(after), "the corrupt journal was rewritten")
}

// forgeSnapshot replaces old by new in the snapshot of a journal file b,
// and rewrites the header so that the length and checksums fit: the
// journal is well formed, its snapshot is not a valid state.
func forgeSnapshot(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	table := crc32.MakeTable(crc32.Castagnoli)
	nl := bytes.IndexByte(b, '\n')
	require.Positive(t, nl)
	var hdr map[string]any
	require.NoError(t, json.Unmarshal(b[9:nl], &hdr))
	n := int(hdr["snapshotLen"].(float64))
	snap := b[nl+1 : nl+1+n]
	forged := bytes.Replace(snap, []byte(old), []byte(new), 1)
	require.NotEqual(t, snap, forged, "%s is not in the snapshot", old)
	hdr["snapshotLen"] = len(forged)
	hdr["snapshotCrc"] = crc32.Checksum(forged, table)
	js, err := json.Marshal(hdr)
	require.NoError(t, err)
	out := fmt.Appendf(nil, "%08x %s\n", crc32.Checksum(js, table), js)
	out = append(append(out, forged...), b[nl+1+n:]...)
	return out
}
