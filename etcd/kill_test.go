package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// ttl is the stale threshold, and so the lease TTL, of the participant
// children: one second, the shortest lease etcd grants.
const ttl = time.Second

// TestKillReachesSurvivors: a participant process killed with SIGKILL
// in the middle of a call is declared crashed when its lease expires,
// and every survivor's Failed closes within its TTL plus one second,
// with nobody polling the store.
func TestKillReachesSurvivors(t *testing.T) {
	c := config(t)
	ctx := context.Background()
	// Survivors beat slowly: only the lease's end can explain a
	// verdict in time.
	o := ledger.Options{HeartbeatInterval: time.Second, StaleThreshold: 5 * time.Second}
	a := connect(t, c, "alice", o)
	opA, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "kill"})
	require.NoError(t, err)
	b := connect(t, c, "bob", o)
	opB, err := b.JoinOperation(ctx, opA.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	victim := startParticipant(t, c, opA.ID(), "victim")

	require.NoError(t, victim.Process.Kill())
	for _, op := range []*ledger.Operation{opA, opB} {
		waitClosed(t, op.Failed(), ttl+time.Second, "the survivor's Failed after the kill")
	}
	f, ok := opA.Failure()
	require.True(t, ok)
	assert.Equal(t, "victim", f.ParticipantID)
}
