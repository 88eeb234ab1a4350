package ledger_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/wire"
)

// A Dart client's requests, as RemoteLedgerClient sends them, served by
// this server: who they act for is in the ledger (dartParticipant), not
// in the server.

// dartClient sends requests as the Dart RemoteLedgerClient does: compact
// JSON, Content-Type application/json; charset=utf-8, no host, no
// position, no token.
type dartClient struct {
	t   testing.TB
	url string
	c   *http.Client
}

func newDartClient(t testing.TB, url string) *dartClient {
	tp := &http.Transport{}
	t.Cleanup(tp.CloseIdleConnections)
	return &dartClient{t: t, url: url, c: &http.Client{Transport: tp, Timeout: 30 * time.Second}}
}

// post sends body (a JSON object) to path and returns the status and
// the decoded answer, which must be a JSON object.
func (d *dartClient) post(path, body string) (int, map[string]any) {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.url+path, strings.NewReader(body))
	require.NoError(d.t, err)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := d.c.Do(req)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	var m map[string]any
	require.NoError(d.t, json.NewDecoder(resp.Body).Decode(&m), "%s: the answer is not a JSON object", path)
	return resp.StatusCode, m
}

// ok posts and requires 200.
func (d *dartClient) ok(path, body string) map[string]any {
	d.t.Helper()
	status, m := d.post(path, body)
	require.Equal(d.t, http.StatusOK, status, "%s %s: %v", path, body, m)
	return m
}

// create creates an operation as participant id (pid, unless 0) and
// returns its id.
func (d *dartClient) create(id string, pid int) string {
	d.t.Helper()
	body := `{"participantId":"` + id + `"`
	if pid != 0 {
		body += `,"participantPid":` + strconv.Itoa(pid)
	}
	m := d.ok(wire.PathCreate, body+`}`)
	op, _ := m["operationId"].(string)
	require.NotEmpty(d.t, op)
	return op
}

// openLocal opens a LocalLedger on dir with fast test settings.
func openLocal(t testing.TB, dir, participant string) ledger.Ledger {
	t.Helper()
	l, err := ledger.Connect(context.Background(), ledger.Options{
		BasePath: dir, ParticipantID: participant,
		HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 400 * time.Millisecond, LivenessPoll: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// viewState reads the state of op in dir through a Viewer.
func viewState(t testing.TB, dir, op string) *ledger.Data {
	t.Helper()
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	d, err := v.State(context.Background(), op)
	require.NoError(t, err)
	return d
}

// viewLog reads the log of op in dir through a Viewer.
func viewLog(t testing.TB, dir, op string, debug bool) string {
	t.Helper()
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	require.NoError(t, err)
	defer v.Close()
	b, err := v.Log(context.Background(), op, debug)
	require.NoError(t, err)
	return string(b)
}

// The participant a Dart client registered is recorded in the ledger
// (with the heartbeat settings `ledger serve` was given for Dart
// clients): a second server over the same directory, started after the
// first one stopped, acts for it.
func TestDartBindingSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	url, first := startBinaryServer(t, dir, "--dart-heartbeat", "2s", "--dart-stale", "7s")
	d := newDartClient(t, url)
	op := d.create("dart_a", 4242)
	call := d.ok(wire.PathCallStart, `{"operationId":"`+op+`","sessionId":1,"description":"build","failOnCrash":true}`)["callId"].(string)
	assert.True(t, strings.HasPrefix(call, "call_dart_a_"), "call id %s", call)
	first.stop(t)

	url, _ = startBinaryServer(t, dir)
	d = newDartClient(t, url)
	hb := d.ok(wire.PathHeartbeat, `{"operationId":"`+op+`"}`)
	assert.Equal(t, true, hb["success"])
	assert.Equal(t, []any{"dart_a"}, hb["participants"])
	d.ok(wire.PathCallEnd, `{"operationId":"`+op+`","callId":"`+call+`"}`)
	d.ok(wire.PathLog, `{"operationId":"`+op+`","message":"after the restart","level":"WARNING"}`)
	d.ok(wire.PathComplete, `{"operationId":"`+op+`"}`)

	s := viewState(t, dir, op)
	assert.Equal(t, ledger.StateCompleted, s.OperationState)
	assert.Equal(t, "dart_a", s.InitiatorID)
	assert.Equal(t, "dart_a/4242@127.0.0.1", s.DartParticipant)
	require.Len(t, s.Participants, 1)
	p := s.Participants[0]
	assert.Equal(t, "dart_a", p.ParticipantID)
	assert.Equal(t, 4242, p.PID)
	assert.Equal(t, "127.0.0.1", p.Host, "the client's address is its host")
	assert.True(t, p.Remote)
	assert.Equal(t, 2*time.Second, p.HeartbeatInterval)
	assert.Equal(t, 7*time.Second, p.StaleThreshold)
	log := viewLog(t, dir, op, false)
	assert.Contains(t, log, "[INFO] dart_a CALL_STARTED "+call+" build")
	assert.Contains(t, log, "[INFO] dart_a CALL_ENDED "+call)
	assert.Contains(t, log, "[WARNING] dart_a after the restart")
	assert.Contains(t, log, "[INFO] dart_a OPERATION_COMPLETED")
}

// A Dart client's heartbeats keep its participant alive for the others
// (the server records them as beats of the participant, by the settings
// of ServerOptions.Dart); when they stop, it is declared crashed, and its
// call that fails on crash fails the operation.
func TestDartHeartbeatsKeepParticipantAlive(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{
		BasePath: dir, Dart: ledger.DartOptions{HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 300 * time.Millisecond},
	})
	d := newDartClient(t, url)
	op := d.create("dart_a", 4242)
	d.ok(wire.PathCallStart, `{"operationId":"`+op+`","sessionId":1,"description":null,"failOnCrash":true}`)

	obs := openLocal(t, dir, "observer")
	ctx := context.Background()
	o, err := obs.JoinOperation(ctx, op, ledger.JoinOptions{})
	require.NoError(t, err)

	deadline := time.Now().Add(2 * time.Second) // several thresholds
	for time.Now().Before(deadline) {
		hb := d.ok(wire.PathHeartbeat, `{"operationId":"`+op+`"}`)
		require.Equal(t, true, hb["success"], "%v", hb)
		select {
		case <-o.Failed():
			f, _ := o.Failure()
			t.Fatalf("the operation failed while the Dart client beat: %+v", f)
		case <-time.After(50 * time.Millisecond):
		}
	}
	s := viewState(t, dir, op)
	assert.Equal(t, ledger.ParticipantActive, participantRecord(t, s, "dart_a").State)
	assert.Equal(t, 300*time.Millisecond, participantRecord(t, s, "dart_a").StaleThreshold)

	// The Dart client stops beating (it was killed).
	waitClosed(t, o.Failed(), 10*time.Second, "the crash of the silent Dart client")
	f, failed := o.Failure()
	require.True(t, failed)
	assert.Equal(t, "dart_a", f.ParticipantID)
	status, m := d.post(wire.PathHeartbeat, `{"operationId":"`+op+`"}`)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, false, m["success"], "a failed operation has no ledger for the Dart client: %v", m)
	assert.NotEmpty(t, m["reason"])
}

// Dart clients cannot tell the server who they are after the join: as
// the Dart server did, a second Dart client that joins an operation
// bound to an active participant joins as that participant (a session
// more), and its requests act for it. Once that participant has left,
// a Dart join binds the operation to the joiner.
func TestDartSecondClientSharesBinding(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	a, b := newDartClient(t, url), newDartClient(t, url)
	op := a.create("dart_a", 4242)
	join := b.ok(wire.PathJoin, `{"operationId":"`+op+`","participantId":"dart_b","participantPid":5151}`)
	assert.Equal(t, "dart_a", join["participantId"])
	assert.Equal(t, true, join["isInitiator"])
	assert.EqualValues(t, 2, join["sessionId"])
	call := b.ok(wire.PathCallStart, `{"operationId":"`+op+`","sessionId":2,"description":"shard","failOnCrash":true}`)["callId"].(string)
	s := viewState(t, dir, op)
	require.Len(t, s.CallFrames, 1)
	assert.Equal(t, "dart_a", s.CallFrames[0].ParticipantID, "the frame of B is A's")
	assert.Equal(t, 4242, s.CallFrames[0].PID)
	b.ok(wire.PathCallEnd, `{"operationId":"`+op+`","callId":"`+call+`"}`)
	b.ok(wire.PathLeave, `{"operationId":"`+op+`","sessionId":2,"cancelPendingCalls":false}`)
	p := participantRecord(t, viewState(t, dir, op), "dart_a")
	assert.Equal(t, ledger.ParticipantActive, p.State)
	assert.Equal(t, 1, p.Sessions)
	a.ok(wire.PathLeave, `{"operationId":"`+op+`","sessionId":1,"cancelPendingCalls":false}`)
	assert.Equal(t, ledger.ParticipantLeft, participantRecord(t, viewState(t, dir, op), "dart_a").State)

	c := newDartClient(t, url)
	join = c.ok(wire.PathJoin, `{"operationId":"`+op+`","participantId":"dart_c"}`)
	assert.Equal(t, "dart_c", join["participantId"])
	assert.Equal(t, false, join["isInitiator"])
	assert.EqualValues(t, 1, join["sessionId"])
	s = viewState(t, dir, op)
	assert.Equal(t, "dart_c/"+strconv.Itoa(wire.DartUnknownPID)+"@127.0.0.1", s.DartParticipant)
	status, m := c.post(wire.PathComplete, `{"operationId":"`+op+`"}`)
	assert.Equal(t, http.StatusConflict, status, "only the initiator completes: %v", m)
	c.ok(wire.PathLog, `{"operationId":"`+op+`","message":"from c"}`)
	assert.Contains(t, viewLog(t, dir, op, false), "[INFO] dart_c from c")
}

// A Dart client that gives no pid (-1, or none) is recorded with
// wire.DartUnknownPID, a pid no process has.
func TestDartUnknownPIDIsRecorded(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	d := newDartClient(t, url)
	for _, pid := range []int{-1, 0} {
		op := d.create("dart_a", pid)
		d.ok(wire.PathCallStart, `{"operationId":"`+op+`","sessionId":1,"description":null,"failOnCrash":true}`)
		s := viewState(t, dir, op)
		assert.Equal(t, wire.DartUnknownPID, participantRecord(t, s, "dart_a").PID)
		require.Len(t, s.CallFrames, 1)
		assert.Equal(t, wire.DartUnknownPID, s.CallFrames[0].PID)
	}
}

// A failed call of a Dart client ends its frame and is logged, but does
// not fail the operation, whatever its failOnCrash: the Dart server never
// did (its client only signals the failure locally).
func TestDartCallFailKeepsOperationRunning(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	d := newDartClient(t, url)
	op := d.create("dart_a", 4242)
	call := d.ok(wire.PathCallStart, `{"operationId":"`+op+`","sessionId":1,"description":null,"failOnCrash":true}`)["callId"].(string)
	d.ok(wire.PathCallFail, `{"operationId":"`+op+`","callId":"`+call+`","error":"Exception: upload failed"}`)
	st := d.ok(wire.PathState, `{"operationId":"`+op+`"}`)
	assert.Equal(t, "running", st["state"])
	assert.EqualValues(t, 0, st["callFrameCount"])
	assert.Contains(t, viewLog(t, dir, op, false), "[ERROR] dart_a CALL_FAILED "+call+" Exception: upload failed")
	// Ending a call the ledger does not have is no error, as in Dart.
	d.ok(wire.PathCallEnd, `{"operationId":"`+op+`","callId":"`+call+`"}`)
}

// A Go client and a Dart client on one operation through one server: the
// Go client keeps its own participant (its requests name it), the Dart
// client acts as the one it registered, and each sees the other.
func TestDartAndGoClientsShareOperation(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{BasePath: dir})
	d := newDartClient(t, url)
	op := d.create("dart_a", 4242)

	ctx := context.Background()
	g := remoteOpener(url, "")(t, ledger.Options{ParticipantID: "go_b", HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 2 * time.Second})
	o, err := g.JoinOperation(ctx, op, ledger.JoinOptions{})
	require.NoError(t, err)
	c, err := ledger.StartCall(ctx, o, ledger.CallOptions[int]{Description: "go work"})
	require.NoError(t, err)

	hb := d.ok(wire.PathHeartbeat, `{"operationId":"`+op+`"}`)
	assert.Equal(t, []any{"go_b"}, hb["participants"], "the Dart client sees the Go call")
	assert.EqualValues(t, 1, hb["callFrameCount"])
	d.ok(wire.PathAbort, `{"operationId":"`+op+`","value":true}`)
	waitClosed(t, o.Aborted(), 10*time.Second, "the Go client sees the Dart abort")
	require.NoError(t, c.End(ctx, 1))
	require.NoError(t, o.Leave(ctx, ledger.LeaveOptions{}))
	d.ok(wire.PathComplete, `{"operationId":"`+op+`"}`)

	s := viewState(t, dir, op)
	assert.Equal(t, ledger.StateCompleted, s.OperationState)
	assert.Equal(t, ledger.ParticipantLeft, participantRecord(t, s, "go_b").State)
	assert.Equal(t, "dart_a/4242@127.0.0.1", s.DartParticipant, "the Go join did not change the binding")
}

// Negative Dart heartbeat settings are refused, as the others are.
func TestDartOptionsChecked(t *testing.T) {
	for _, o := range []ledger.DartOptions{{HeartbeatInterval: -time.Second}, {StaleThreshold: -1}} {
		srv := ledger.NewServer(ledger.ServerOptions{BasePath: t.TempDir(), Dart: o})
		assert.Error(t, srv.Err(), "%+v", o)
		srv.Close()
	}
}

// A Dart client declared crashed (here its heartbeats stopped for longer
// than its threshold; its call was contained, so the operation runs on)
// hears of it at its next heartbeat, as a Dart client hears that its
// ledger is gone.
func TestDartCrashedClientHearsOfIt(t *testing.T) {
	dir := t.TempDir()
	url := startHTTPTestServer(t, ledger.ServerOptions{
		BasePath: dir, Dart: ledger.DartOptions{HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 200 * time.Millisecond},
	})
	d := newDartClient(t, url)
	op := d.create("dart_a", 4242)
	d.ok(wire.PathCallStart, `{"operationId":"`+op+`","sessionId":1,"description":null,"failOnCrash":false}`)
	_, err := openLocal(t, dir, "observer").JoinOperation(context.Background(), op, ledger.JoinOptions{})
	require.NoError(t, err)

	waitFor(t, 10*time.Second, "the verdict on the silent Dart client", func() bool {
		return participantRecord(t, viewState(t, dir, op), "dart_a").State == ledger.ParticipantCrashed
	})
	hb := d.ok(wire.PathHeartbeat, `{"operationId":"`+op+`"}`)
	assert.Equal(t, false, hb["success"])
	assert.Contains(t, hb["reason"], "crashed")
	assert.Equal(t, ledger.StateRunning, viewState(t, dir, op).OperationState, "a contained call does not fail the operation")
}
