package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

// TestFrameChangesEditOnlyFrames: decide gives the changes that
// editsFramesOnly names a copy of the state that shares all but the frames with the state every view of
// the operation holds, so such a change must leave the rest alone, on
// success and on refusal.
func TestFrameChangesEditOnlyFrames(t *testing.T) {
	now := store.Now()
	det := now
	shared := &store.Data{
		OperationID: "op", InitiatorID: "a", OperationState: store.StateRunning, StartTime: now, LastHeartbeat: now,
		CallFrames: []store.CallFrame{{ParticipantID: "a", CallID: "call_a_1", PID: 1, State: store.FrameActive, StartTime: now, LastHeartbeat: now}},
		Participants: []store.Participant{
			{ParticipantID: "a", PID: 1, Host: "h", Sessions: 1, JoinedAt: now, LastHeartbeat: now, State: store.ParticipantActive},
			{ParticipantID: "b", PID: 2, Host: "h", Sessions: 1, JoinedAt: now, LastHeartbeat: now, State: store.ParticipantActive},
		},
		TempResources:      []store.TempResource{{Path: "/tmp/x", Owner: 1, RegisteredAt: now}},
		Keys:               map[string][]string{"b/2@h": {"k"}},
		DetectionTimestamp: &det,
	}
	a := participant{ID: "a", PID: 1, Host: "h"}
	for _, c := range []change{
		addFrameOp{who: a, spec: frameSpec{CallID: "call_a_2", Kind: frameCall}},
		addFrameOp{who: a, spec: frameSpec{CallID: "call_a_1", Kind: frameCall}}, // refused: exists
		removeFrameOp{who: a, callID: "call_a_1", kind: frameCall},
		removeFrameOp{who: a, callID: "call_a_9", kind: frameCall}, // refused: not there
	} {
		require.True(t, editsFramesOnly(c), "%T", c)
		before := shared.Clone()
		tx := &tx{d: shared.CloneFrames(), now: store.Time{Time: now.Add(time.Hour)}}
		_ = c.apply(tx)
		assert.Equal(t, before, shared, "%T edited what it shares", c)
		edited := tx.d.CloneFrames()
		edited.CallFrames = before.CallFrames
		assert.Equal(t, before, edited.Clone(), "%T changed more than the frames", c)
	}
	assert.False(t, editsFramesOnly(dartEndOp{}), "a change that embeds one is another change")

	// Through decide, with and without an idempotency key (which
	// remember adds to the keys): the state of the view is left as it was.
	for _, key := range []requestKey{{}, {by: "a/1@h", key: "k1"}} {
		before := shared.Clone()
		var (
			out    outcome
			after  view
			failed error
		)
		ch, err := decide("op", view{d: shared, rev: 7, base: 1}, addFrameOp{who: a, spec: frameSpec{CallID: "call_a_3", Kind: frameCall}}, key, &out, &after, &failed)
		require.NoError(t, err)
		require.NoError(t, failed)
		require.Len(t, ch.Records, 1)
		assert.Equal(t, before, shared, "decide edited the state of the view (key %q)", key.key)
		assert.Equal(t, 2, len(after.d.CallFrames))
	}
}
