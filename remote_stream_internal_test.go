package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/internal/wire"
)

// TestStreamReadsEventsLongerThanItsBuffer sends a stream whose first
// event (a snapshot of 500 frames) is longer than the reader's buffer,
// then a record: both are taken in, and the view ends with the record.
func TestStreamReadsEventsLongerThanItsBuffer(t *testing.T) {
	now := store.Now()
	d := &store.Data{OperationID: "op", InitiatorID: "a", StartTime: now, OperationState: "running", LastHeartbeat: now}
	normalize(d)
	for i := range 500 {
		d.CallFrames = append(d.CallFrames, store.CallFrame{
			ParticipantID: "a", CallID: fmt.Sprintf("call_a_%d_%0150d", i, i), PID: 1, Host: "h",
			StartTime: now, LastHeartbeat: now, State: "active",
		})
	}
	snap := store.Encode(d)
	require.Greater(t, len(snap), 64<<10, "the snapshot must not fit the buffer")
	after := d.Clone()
	after.CallFrames = after.CallFrames[1:]
	body, err := encodeBody(false, diff(d, after), requestKey{})
	require.NoError(t, err)

	var events bytes.Buffer
	for _, ev := range []wire.Tail{
		{Success: true, Rev: 7, Base: 7, Snapshot: snap},
		{Success: true, Rev: 8, Records: []wire.Record{{Rev: 8, Body: body}}},
	} {
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		fmt.Fprintf(&events, "event: tail\ndata: %s\n\n", b)
	}
	res := &http.Response{Body: io.NopCloser(&events)}
	b := &remoteBackend{}
	sv := &streamView{}
	progressed, done, err := b.readEvents(res, sv, make(chan struct{}, 1))
	assert.True(t, progressed)
	assert.False(t, done)
	assert.ErrorIs(t, err, io.EOF)
	assert.EqualValues(t, 8, sv.v.rev, "the view's position")
	require.NotNil(t, sv.v.d)
	assert.Len(t, sv.v.d.CallFrames, 499)
}

// TestFoldWireRefusesAGap checks that a tail whose records do not follow
// the reader's position is an error, not a state that silently misses a
// change.
func TestFoldWireRefusesAGap(t *testing.T) {
	now := store.Now()
	d := &store.Data{OperationID: "op", InitiatorID: "a", StartTime: now, OperationState: "running", LastHeartbeat: now}
	normalize(d)
	v := view{d: d, rev: 5}
	next := d.Clone()
	next.Aborted = true
	body, err := encodeBody(false, diff(d, next), requestKey{})
	require.NoError(t, err)

	_, err = foldWire(v, &wire.Tail{Rev: 7, Records: []wire.Record{{Rev: 7, Body: body}}})
	assert.Error(t, err, "record 7 after position 5")
	nv, err := foldWire(v, &wire.Tail{Rev: 6, Records: []wire.Record{{Rev: 6, Body: body}}})
	require.NoError(t, err, "record 6 after position 5")
	assert.True(t, nv.d.Aborted)
}
