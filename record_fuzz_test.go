package ledger

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/store"
	"github.com/tomdist/ledger/journal"
)

// fuzzState is a state with a participant, a frame and a temp resource,
// as the records of FuzzApplyRecord find it.
func fuzzState() *store.Data {
	now := store.Now()
	d := &store.Data{
		OperationID: "20240115T10:30:00.123-alice-0a1b2c3d", InitiatorID: "alice", StartTime: now,
		OperationState: "running", LastHeartbeat: now,
		Participants: []store.Participant{{ParticipantID: "alice", PID: 7, Host: "h", JoinedAt: now, LastHeartbeat: now, State: "active", Sessions: 1}},
		CallFrames: []store.CallFrame{{ParticipantID: "alice", CallID: "call_alice_1_ab12", PID: 7, Host: "h",
			StartTime: now, LastHeartbeat: now, State: "active"}},
		TempResources: []store.TempResource{{Path: "/tmp/x", Owner: 7, RegisteredAt: now, ParticipantID: "alice", Host: "h"}},
	}
	normalize(d)
	return d
}

// FuzzApplyRecord applies an arbitrary record body (from a newer version,
// a foreign writer, a bad server) to a valid state, as every reader of a
// journal does. It never panics, it does not change the state it was
// given when it fails, and a state it accepts reads back from its
// snapshot: a record cannot leave a state that the next compaction would
// write as a snapshot nobody can read.
func FuzzApplyRecord(f *testing.F) {
	d := fuzzState()
	later := d.Clone()
	later.CallFrames = nil
	later.Participants[0].State = "left"
	later.TempResources = append(later.TempResources, store.TempResource{Path: "/tmp/y", Owner: 7, RegisteredAt: later.StartTime})
	for _, ops := range [][]op{diff(d, later), diff(nil, d), {{Op: "upsertWidget"}}, {{Op: opHead, Head: &store.Data{}}}} {
		b, err := encodeBody(false, ops, requestKey{by: "alice 7 h", key: "3b1e2a4c-0000-4000-8000-000000000000"})
		require.NoError(f, err)
		f.Add(b)
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"ops":null}`, `{"ops":[{"op":"frame"}]}`, `{"ops":[{"op":"frame","frame":{}}]}`,
		`{"ops":[{"op":"participant","participant":{"participantId":"../x"}}]}`,
		`{"ops":[{"op":"temp","temp":{"path":""}}]}`, `{"ops":[{"op":"init"}]}`,
		`{"ops":[{"op":"init","data":{"operationId":"x"}}]}`, `{"ops":[{"op":"head","head":{"operationId":"other"}}]}`,
		`{"ops":[{"op":"unframe","key":"nope"},{"op":"clearFrames"}],"key":"k","by":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d := fuzzState()
		before := store.Encode(d)
		got, err := apply(d.Clone(), body)
		require.Equal(t, string(before), string(store.Encode(d)), "the state given changed")
		if err != nil {
			return
		}
		require.NotNil(t, got)
		snap := snapshot(got, 9)
		again, err := decodeState(snap)
		require.NoError(t, err, "the snapshot of an accepted state does not read back:\n%s", snap)
		// And the fold of a journal tail that starts from that snapshot
		// gives the same state.
		v, err := view{}.fold(journal.Tail{Base: 9, Snapshot: snap}, false)
		require.NoError(t, err)
		a, _ := json.Marshal(again)
		b, _ := json.Marshal(v.d)
		require.JSONEq(t, string(a), string(b))
	})
}

// FuzzDecodeBody: a body store.Reader reads, encoding/json reads to the
// same body; and decodeBody, whichever way it goes, agrees with
// encoding/json on every input, errors included.
func FuzzDecodeBody(f *testing.F) {
	for _, b := range bodySeeds(f) {
		f.Add(b)
	}
	for _, s := range []string{
		`{"ops":[{"op":"frame","frame":{"callId":"c"},"frame":{"callId":"d"}}]}`,
		`{"ops":[{"OP":"abort"}]}`, `{"ops":null}`, `{"routine":true,"ops":[{"op":"unframe","key":"c\u0041"}]}`,
		`{"ops":[{"op":"head","head":{"operationId":"x","callFrames":null}}]}`, `{"ops":[]} x`, `{"key":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var slow body
		slowErr := json.Unmarshal(raw, &slow)
		got, err := decodeBody(raw)
		if slowErr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, slow, got)
	})
}

// bodySeeds returns the bodies encodeBody writes for the changes of a
// state, routine and not, with a key and without.
func bodySeeds(t testing.TB) [][]byte {
	d := fuzzState()
	later := d.Clone()
	later.CallFrames = append(later.CallFrames[:0:0], store.CallFrame{ParticipantID: "alice", CallID: "call_alice_2_cd34", PID: 7, Host: "h",
		StartTime: d.StartTime, LastHeartbeat: d.StartTime, State: "active", Description: "build", Resources: []string{"/tmp/r"}, FailOnCrash: true})
	later.Participants[0].State = "left"
	later.TempResources = append(later.TempResources, store.TempResource{Path: "/tmp/y", Owner: 7, RegisteredAt: later.StartTime})
	later.Aborted = true
	var out [][]byte
	for _, ops := range [][]op{diff(d, later), diff(nil, d), {{Op: opUnframe, Key: "call_alice_1_ab12"}}, {}} {
		for _, key := range []requestKey{{}, {by: "alice/7@h", key: "3b1e2a4c-0000-4000-8000-000000000000"}} {
			b, err := encodeBody(len(ops) < 2, ops, key)
			require.NoError(t, err)
			out = append(out, b)
		}
	}
	return out
}

// TestDecodeBodyTakesTheFastWay: what encodeBody writes, store.Reader
// reads, to what encoding/json reads; and the keys it knows are the JSON
// names of the fields of body and op.
func TestDecodeBodyTakesTheFastWay(t *testing.T) {
	for _, raw := range bodySeeds(t) {
		b, ok := readBody(raw)
		require.True(t, ok, "went to encoding/json: %s", raw)
		var want body
		require.NoError(t, json.Unmarshal(raw, &want))
		assert.Equal(t, want, b)
	}
	for typ, keys := range map[reflect.Type][]string{reflect.TypeFor[body](): bodyKeys, reflect.TypeFor[op](): opKeys} {
		var names []string
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			names = append(names, name)
		}
		assert.ElementsMatch(t, names, keys, "keys of %s", typ.Name())
	}
}

// BenchmarkDecodeBody decodes the body of a call's start, as a
// participant applies every record it put off, with decodeBody and with
// encoding/json.
func BenchmarkDecodeBody(b *testing.B) {
	d := fuzzState()
	later := d.Clone()
	later.CallFrames = append(later.CallFrames, store.CallFrame{ParticipantID: "alice", CallID: "call_alice_2_cd34", PID: 7, Host: "h",
		StartTime: d.StartTime, LastHeartbeat: d.StartTime, State: "active", Description: "build", FailOnCrash: true})
	raw, err := encodeBody(true, diff(d, later), requestKey{})
	require.NoError(b, err)
	b.Run("decodeBody", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeBody(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var v body
			if err := json.Unmarshal(raw, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
