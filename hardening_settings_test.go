package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// beatCounter counts the heartbeats of an observer's session, so that a
// test waits for time to pass on the observer's own beats.
type beatCounter struct{ n atomic.Int32 }

func (c *beatCounter) callback() ledger.OperationCallback {
	return ledger.OperationCallback{
		OnHeartbeatSuccess: func(*ledger.Operation, ledger.HeartbeatResult) { c.n.Add(1) },
	}
}

// waitBeats waits for n more heartbeats, or until op fails (the beats
// then stop): the caller checks which.
func (c *beatCounter) waitBeats(t *testing.T, op *ledger.Operation, n int32) {
	t.Helper()
	target := c.n.Load() + n
	waitFor(t, 60*time.Second, fmt.Sprintf("%d heartbeats of the observer", n), func() bool {
		return c.n.Load() >= target || isClosed(op.Failed())
	})
}

// participantRecord returns the record of the participant named id.
func participantRecord(t *testing.T, d *ledger.Data, id string) ledger.Participant {
	t.Helper()
	for _, p := range d.Participants {
		if p.ParticipantID == id {
			return p
		}
	}
	require.FailNow(t, "no participant record", "%s in %+v", id, d.Participants)
	return ledger.Participant{}
}

// An observer with short settings must judge a peer with long ones by the
// peer's settings: the peer, alive and beating at its own pace with a call
// open, is never declared crashed; killed, it is still seen dead (at once
// by its liveness lock on the same host, by its own threshold remotely).
func TestPeerJudgedByItsOwnSettings(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		var beats beatCounter
		obs := e.Open("observer", ledger.Options{}) // 50ms / 400ms
		op, err := obs.CreateOperation(ctx, ledger.CreateOptions{Callback: beats.callback()})
		require.NoError(t, err)

		// Locally the peer runs the defaults (5s / 15s). A remote peer has
		// no liveness lock, so its death is seen by its threshold alone:
		// shorter settings keep the test short, still far above the
		// observer's.
		settings := []string{"HB=5s", "STALE=15s"}
		if e.remote {
			settings = []string{"HB=1s", "STALE=3s"}
		}
		peer := startParticipant(t, e, op.ID(), "peer", append([]string{"CALLS=1"}, settings...)...)

		// About 3 seconds of the observer's beats, many times its own
		// threshold and longer than the peer's beat interval.
		beats.waitBeats(t, op, 60)
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, ledger.StateRunning, d.OperationState)
		assert.Equal(t, ledger.ParticipantActive, participantRecord(t, d, "peer").State, "a live peer was declared crashed")
		info, failed := op.Failure()
		require.False(t, failed, "the operation failed while the peer lived: %+v", info)

		peer.kill9(t)
		// Locally well within the peer's 15s threshold: only the liveness
		// lock explains it.
		limit := 10 * time.Second
		if e.remote {
			limit = 30 * time.Second
		}
		waitClosed(t, op.Failed(), limit, "Failed() after the peer's kill -9")
		info, _ = op.Failure()
		assert.Contains(t, info.Reason, "peer")
	})
}

// Each participant's record carries its own heartbeat settings, written
// on create and join, on every backend.
func TestParticipantRecordCarriesItsSettings(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		a := e.Open("alice", ledger.Options{HeartbeatInterval: 70 * time.Millisecond, StaleThreshold: 900 * time.Millisecond})
		op, err := a.CreateOperation(ctx, ledger.CreateOptions{})
		require.NoError(t, err)
		b := e.Open("bob", ledger.Options{HeartbeatInterval: 2 * time.Second, StaleThreshold: 7 * time.Second})
		_, err = b.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
		require.NoError(t, err)

		d, err := op.State(ctx)
		require.NoError(t, err)
		alice, bob := participantRecord(t, d, "alice"), participantRecord(t, d, "bob")
		assert.Equal(t, 70*time.Millisecond, alice.HeartbeatInterval)
		assert.Equal(t, 900*time.Millisecond, alice.StaleThreshold)
		assert.Equal(t, 2*time.Second, bob.HeartbeatInterval)
		assert.Equal(t, 7*time.Second, bob.StaleThreshold)
	})
}

// A record without settings, as the Dart package writes it, is judged by
// the defaults (5s / 15s), not by the observer's settings.
func TestRecordWithoutSettingsGetsDefaults(t *testing.T) {
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, e *env) {
		id := "20240115T10:30:00.123-dart-0a1b2c3d"
		now := time.Now().Format("2006-01-02T15:04:05.000") // local, as Dart writes it
		// A Dart participant on another host, so only its heartbeat can
		// speak for it; it never beats again.
		state := fmt.Sprintf(`{
  "operationId": %q,
  "initiatorId": "dart",
  "startTime": %q,
  "operationState": "running",
  "aborted": false,
  "lastHeartbeat": %q,
  "callFrames": [],
  "tempResources": [],
  "participants": [
    {"participantId": "dart", "pid": 4242, "host": "dart-host", "sessions": 1, "joinedAt": %q, "lastHeartbeat": %q, "state": "active"}
  ]
}`, id, now, now, now, now)
		require.NoError(t, os.WriteFile(filepath.Join(e.dir, id+".operation.json"), []byte(state), 0o644))

		var beats beatCounter
		obs := e.Open("observer", ledger.Options{}) // 50ms / 400ms
		op, err := obs.JoinOperation(ctx, id, ledger.JoinOptions{Callback: beats.callback()})
		require.NoError(t, err)
		beats.waitBeats(t, op, 40) // about 2s: five times the observer's threshold
		d, err := op.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, ledger.StateRunning, d.OperationState)
		dart := participantRecord(t, d, "dart")
		assert.Equal(t, ledger.ParticipantActive, dart.State, "a Dart participant was judged by the observer's threshold")
		assert.Zero(t, dart.HeartbeatInterval, "the record of another participant was given settings")
	})
}
