package ledger_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/dirstore"
)

// TestRemoteClientFailsOver: two servers over one ledger directory; a
// client given both works through the first, and when it goes away,
// through the second, its calls and its stream included; a client whose
// first URL does not answer starts on the second.
func TestRemoteClientFailsOver(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srvA := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	require.NoError(t, srvA.Err())
	tsA := httptest.NewServer(srvA)
	// srvA first: it ends its streams, which tsA.Close would wait for.
	t.Cleanup(func() { srvA.Close(); tsA.Close() })
	urlB := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})

	o := ledger.Options{ParticipantID: "alice", ServerURL: tsA.URL, ServerURLs: []string{urlB},
		HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: time.Second, RequestTimeout: time.Second}
	l, err := ledger.Connect(ctx, o)
	require.NoError(t, err)
	defer l.Close()
	rc := l.(*ledger.RemoteClient)
	assert.Equal(t, tsA.URL, rc.ServerURL())
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)

	// The first server goes away: no new connections, then none of the
	// open ones (in the other order, the client's stream could reconnect
	// in between and keep tsA.Close waiting for it).
	require.NoError(t, tsA.Listener.Close())
	tsA.CloseClientConnections()
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err, "a call through the second server")
	require.NoError(t, call.End(ctx, 1))
	assert.Equal(t, urlB, rc.ServerURL())

	// The stream moved too: an abort by another participant arrives.
	other, err := ledger.Connect(ctx, ledger.Options{ParticipantID: "bob", ServerURL: urlB})
	require.NoError(t, err)
	defer other.Close()
	opB, err := other.JoinOperation(ctx, op.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	require.NoError(t, opB.SetAbortFlag(ctx, true))
	waitClosed(t, op.Aborted(), 5*time.Second, "the abort through the second server's stream")

	// A first URL that does not answer: the client starts on the next.
	o.ParticipantID, o.ServerURL = "carol", tsA.URL
	l2, err := ledger.Connect(ctx, o)
	require.NoError(t, err)
	defer l2.Close()
	assert.Equal(t, urlB, l2.(*ledger.RemoteClient).ServerURL())
}

// TestServerOverStore: a server serves a directory or a journal.Store
// (ServerOptions.Store), never both, and needs one; over a store it
// serves clients as over a directory.
func TestServerOverStore(t *testing.T) {
	ctx := context.Background()
	assert.Error(t, ledger.NewServer(ledger.ServerOptions{}).Err())
	s, err := dirstore.Open(t.TempDir(), dirstore.Options{})
	require.NoError(t, err)
	assert.Error(t, ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir(), Store: s}).Err())
	url := startHTTPTestServer(t, ledger.ServerOptions{Store: s})
	l, err := ledger.Connect(ctx, ledger.Options{ParticipantID: "alice", ServerURL: url})
	require.NoError(t, err)
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, op.Complete(ctx))
	ids, err := s.List(ctx, true)
	require.NoError(t, err)
	assert.Contains(t, ids, op.ID(), "the store has the archived operation")
}

// TestOpenOverStore: ledger.Open runs a ledger over a journal.Store it is
// given, and refuses options of other backends.
func TestOpenOverStore(t *testing.T) {
	ctx := context.Background()
	_, err := ledger.Open(nil, ledger.Options{})
	assert.Error(t, err)
	dir := t.TempDir()
	s, err := dirstore.Open(dir, dirstore.Options{})
	require.NoError(t, err)
	_, err = ledger.Open(s, ledger.Options{BasePath: t.TempDir()})
	assert.Error(t, err)
	l, err := ledger.Open(s, ledger.Options{ParticipantID: "alice", HeartbeatInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{})
	require.NoError(t, err)
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{})
	require.NoError(t, err)
	require.NoError(t, call.End(ctx, 1))
	require.NoError(t, op.Complete(ctx))
	require.NoError(t, l.Close())
	_, err = s.List(ctx, true)
	assert.Error(t, err, "the ledger's Close closed the store")
	s, err = dirstore.Open(dir, dirstore.Options{})
	require.NoError(t, err)
	defer s.Close()
	ids, err := s.List(ctx, true)
	require.NoError(t, err)
	assert.Contains(t, ids, op.ID())
}
