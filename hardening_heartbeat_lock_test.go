package ledger_test

import (
	"bufio"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// heartbeatLog records the heartbeat errors of an observer's session.
type heartbeatLog struct {
	beatCounter
	mu   sync.Mutex // guards errs
	errs []*ledger.HeartbeatError
}

func (h *heartbeatLog) callback() ledger.OperationCallback {
	cb := h.beatCounter.callback()
	cb.OnHeartbeatError = func(_ *ledger.Operation, err *ledger.HeartbeatError) {
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
	}
	return cb
}

// count returns how many errors of type typ mention what.
func (h *heartbeatLog) count(typ ledger.HeartbeatErrorType, what string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, err := range h.errs {
		if err.Type == typ && strings.Contains(err.Message, what) {
			n++
		}
	}
	return n
}

// While another process holds the operation's lock for longer than the
// stale threshold, no heartbeat can be written to the ledger; a live peer
// on the same host must still not be taken for stale or crashed: its
// liveness file proves it alive without the lock.
func TestLockHeldLongerThanThresholdCausesNoVerdict(t *testing.T) {
	ctx := context.Background()
	e := localEnv(t)
	var h heartbeatLog
	obs := e.Open("observer", ledger.Options{}) // 50ms / 400ms
	op, err := obs.CreateOperation(ctx, ledger.CreateOptions{Callback: h.callback()})
	require.NoError(t, err)
	startParticipant(t, e, op.ID(), "peer", "CALLS=1") // 50ms / 400ms

	holder := child(t, "fnd-flock", "FND_LOCK="+fLockPath(e.dir, op.ID()))
	stdin, err := holder.StdinPipe()
	require.NoError(t, err)
	stdout, err := holder.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, holder.Start())
	t.Cleanup(func() { stdin.Close(); holder.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)

	// A heartbeat takes no lock of the operation: the observer beats on,
	// and judges the peer by its lease and its beats, for three stale
	// thresholds of its beats (50ms each, threshold 400ms) and more.
	h.waitBeats(t, op, 30)
	assert.Zero(t, h.count(ledger.HeartbeatLockFailed, ""), "a heartbeat waited for the lock")
	assert.Zero(t, h.count(ledger.HeartbeatStale, "participant peer/"), "the peer was taken for stale while the lock was held")

	stdin.Close() // the holder lets go
	h.waitBeats(t, op, 20)
	d, err := op.State(ctx)
	require.NoError(t, err)
	assert.Equal(t, ledger.StateRunning, d.OperationState)
	for _, p := range d.Participants {
		assert.Equal(t, ledger.ParticipantActive, p.State, "participant %s", p.ParticipantID)
	}
	info, failed := op.Failure()
	assert.False(t, failed, "the operation failed: %+v", info)
	assert.Zero(t, h.count(ledger.HeartbeatStale, "participant peer/"), "the peer was taken for stale")
}
