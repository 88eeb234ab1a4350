package ledger_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestOpenKeepsFilesThatLookLikeTemps is the attack of issue 10 item 1: a
// participant id that makes an operation's files look like temp files
// left by a killed writer. Aged past the sweep age, they must survive the
// opening of another ledger, and the operation must stay joinable.
func TestOpenKeepsFilesThatLookLikeTemps(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func(participant string) *ledger.LocalLedger {
		l, err := ledger.NewLocalLedger(ledger.Options{
			BasePath: dir, ParticipantID: participant, NoSignalHandler: true,
			HeartbeatInterval: time.Hour, StaleThreshold: 3 * time.Hour,
		})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		return l
	}
	w := open("w.operation.json.tmp-1")
	op, err := w.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.Log(ctx, ledger.LogDebug, "a debug line"))

	old := time.Now().Add(-2 * time.Minute)
	var before []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			before = append(before, p)
			err = os.Chtimes(p, old, old)
		}
		return err
	}))
	require.Contains(t, before, filepath.Join(dir, op.ID()+".operation.json"))

	bob := open("bob")
	for _, p := range before {
		_, err := os.Lstat(p)
		assert.NoError(t, err, "opening a ledger deleted a file of a live operation")
	}
	_, err = bob.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	assert.NoError(t, err)
}
