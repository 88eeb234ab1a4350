package ledger

import (
	"fmt"
	"testing"
	"time"

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

// TestFrameChangesEditOnlyFrames: decide gives a frameChange a copy of
// the state that shares all but the frames with the state every view of
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
	for _, c := range []frameChange{
		addFrameOp{who: a, spec: frameSpec{CallID: "call_a_2", Kind: frameCall}},
		addFrameOp{who: a, spec: frameSpec{CallID: "call_a_1", Kind: frameCall}}, // refused: exists
		removeFrameOp{who: a, callID: "call_a_1", kind: frameCall},
		removeFrameOp{who: a, callID: "call_a_9", kind: frameCall}, // refused: not there
	} {
		before := shared.Clone()
		tx := &tx{d: shared.CloneFrames(), now: store.Time{Time: now.Add(time.Hour)}}
		_ = c.apply(tx)
		assert.Equal(t, before, shared, "%T edited what it shares", c)
		edited := tx.d.CloneFrames()
		edited.CallFrames = before.CallFrames
		assert.Equal(t, before, edited.Clone(), "%T changed more than the frames", c)
	}
}
