//go:build unix

package etcd_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// TestPartitionedParticipant: a participant process whose keep-alives
// stop (SIGSTOP: it lives, but says nothing to etcd, as if cut off) loses
// its lease after its TTL and is declared crashed by the others.
func TestPartitionedParticipant(t *testing.T) {
	c := config(t)
	ctx := context.Background()
	a := connect(t, c, "alice", ledger.Options{HeartbeatInterval: time.Second, StaleThreshold: 5 * time.Second})
	op, err := a.CreateOperation(ctx, ledger.CreateOptions{Description: "partition"})
	require.NoError(t, err)
	p := startParticipant(t, c, op.ID(), "cutoff")

	require.NoError(t, p.Process.Signal(syscall.SIGSTOP))
	t.Cleanup(func() { p.Process.Signal(syscall.SIGCONT) })
	waitClosed(t, op.Failed(), ttl+2*time.Second, "Failed after the participant's keep-alives stopped")
	f, _ := op.Failure()
	require.Equal(t, "cutoff", f.ParticipantID)
}
