package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeFast decodes b the fast way only, and reports whether it could.
func decodeFast(b []byte) (*Data, bool) {
	d := new(Data)
	p := NewReader(b)
	return d, p.Data(d) && p.End()
}

// FuzzDecode: whatever the fast decoder takes, encoding/json decodes to
// the same state; and Decode, whichever way it goes, agrees with
// encoding/json on every input.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(fullData()))
	f.Add(Encode(benchData(3)))
	d := fullData()
	d.Keys = map[string][]string{"a/1@h": {"k1", "k2"}, "b/2@h": {}}
	d.JournalRev = 17
	d.CallFrames[0].Resources = []string{}
	f.Add(Encode(d))
	for _, s := range []string{
		`{"operationId":"x","aborted":true,"callFrames":[{"pid":-0,"callId":"c"}]}`,
		`{"operationId":"x","operationId":"y"}`,
		`{"OperationId":"x"}`,
		`{"operationId":"x\u0041"}`,
		`{"participants":[{"pid":1e3}]}`,
		`{"participants":[{"pid":01}]}`,
		`{"callFrames":null,"failure":{"crashedCallIds":null}}`,
		`{"idempotencyKeys":{"a":["k"],"a":["l"]}}`,
		`{"startTime":"2024-01-15T10:30:00.123"}`,
		`{"journalRev":18446744073709551616}`,
		`{"unknown":1}`,
		`{} x`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var slow Data
		slowErr := json.Unmarshal(b, &slow)
		if fast, ok := decodeFast(b); ok {
			require.NoError(t, slowErr, "taken by the fast decoder only")
			require.Equal(t, &slow, fast)
		}
		got, err := Decode(b)
		if slowErr != nil {
			assert.Error(t, err)
			return
		}
		require.NoError(t, err)
		assert.Equal(t, &slow, got)
	})
}

// TestDecodeTakesTheFastWay: what Encode writes, Decode reads without
// encoding/json, to the state encoded; whitespace laid out otherwise
// does not matter.
func TestDecodeTakesTheFastWay(t *testing.T) {
	full := fullData()
	full.Keys = map[string][]string{"a/1@h": {"k1", "k2"}, "b/2@h": {}}
	full.JournalRev = 99
	full.DartParticipant = "dart"
	full.Failure.Coordinator = "alice"
	bare := fullData()
	bare.Description, bare.DetectionTimestamp, bare.RemovalTimestamp, bare.Failure = "", nil, nil, nil
	bare.CallFrames, bare.TempResources, bare.Participants = []CallFrame{}, []TempResource{}, []Participant{}
	for name, d := range map[string]*Data{"full": full, "bare": bare, "200 frames": benchData(200)} {
		t.Run(name, func(t *testing.T) {
			for _, b := range [][]byte{Encode(d), compact(t, Encode(d))} {
				got, ok := decodeFast(b)
				require.True(t, ok, "Encode's output went to encoding/json")
				var want Data
				require.NoError(t, json.Unmarshal(b, &want))
				assert.Equal(t, &want, got)
				assert.Equal(t, string(Encode(d)), string(Encode(got)), "the state read is not the state written")
			}
		})
	}
}

// TestDecodeTimes: the times the fast decoder reads itself are what
// encoding/json (Time.UnmarshalJSON) reads, to the bit, and those it must
// refuse it leaves to encoding/json.
func TestDecodeTimes(t *testing.T) {
	for _, ts := range []string{
		"2024-01-15T10:30:00.123Z", "2024-02-29T23:59:59.999Z", "2023-02-29T00:00:00.000Z", "2024-04-31T00:00:00.000Z",
		"2024-04-30T24:00:00.000Z", "2024-04-30T23:60:00.000Z", "2024-04-30T23:59:60.000Z", "2024-00-10T00:00:00.000Z",
		"2024-13-10T00:00:00.000Z", "2024-12-00T00:00:00.000Z", "0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
		"1900-03-01T12:00:00.000Z", "2200-03-01T12:00:00.000Z", "2024-01-15t10:30:00.123z", "2024-01-15T10:30:00.1234",
	} {
		doc := []byte(`{"operationId":"op","startTime":"` + ts + `"}`)
		var want Data
		wantErr := json.Unmarshal(doc, &want)
		got, err := Decode(doc)
		if wantErr != nil {
			assert.Error(t, err, ts)
			continue
		}
		require.NoError(t, err, ts)
		assert.True(t, reflect.DeepEqual(&want, got), "%s: %#v, want %#v", ts, got.StartTime, want.StartTime)
		if fast, ok := parseUTCMillis([]byte(ts)); ok {
			assert.True(t, reflect.DeepEqual(want.StartTime, fast), "%s: fast %#v, want %#v", ts, fast, want.StartTime)
		}
	}
	_, ok := parseUTCMillis([]byte("2024-01-15T10:30:00.123Z"))
	assert.True(t, ok, "the form Encode writes")
}

func compact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	require.NoError(t, json.Compact(&out, b))
	return out.Bytes()
}

// TestDecodeKnowsEveryField: the keys the fast decoder reads are the JSON
// names of the fields, so that a field added to a type is not sent to
// encoding/json forever, and a key renamed is not read under its old name.
func TestDecodeKnowsEveryField(t *testing.T) {
	for typ, keys := range map[reflect.Type][]string{
		reflect.TypeFor[Data](): dataKeys, reflect.TypeFor[CallFrame](): frameKeys, reflect.TypeFor[TempResource](): tempKeys,
		reflect.TypeFor[Participant](): participantKeys, reflect.TypeFor[Failure](): failureKeys,
	} {
		var names []string
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			names = append(names, name)
		}
		assert.ElementsMatch(t, names, keys, "keys of %s", typ.Name())
		assert.Equal(t, len(keys), len(slices.Compact(slices.Sorted(slices.Values(keys)))), "a key twice in %s", typ.Name())
	}
}

// BenchmarkDecode decodes a snapshot of 32 participants with a frame each,
// what a busy operation's journal holds, with Decode and with encoding/json.
func BenchmarkDecode(b *testing.B) {
	d := benchData(32)
	for i := range 32 {
		d.Participants = append(d.Participants, Participant{ParticipantID: "w" + strings.Repeat("1", i%3+1), PID: 1000 + i, Host: "build-host",
			Sessions: 1, JoinedAt: Now(), LastHeartbeat: Now(), State: ParticipantActive})
	}
	doc := Encode(d)
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, err := Decode(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if err := json.Unmarshal(doc, new(Data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
