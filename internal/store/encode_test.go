package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// marshalIndent is what Encode must write, byte for byte.
func marshalIndent(t testing.TB, d *Data) []byte {
	t.Helper()
	b, err := json.MarshalIndent(d, "", "  ")
	require.NoError(t, err)
	return b
}

// cachingEncoder encodes through a frame cache and recycles buffers as
// the Store does.
type cachingEncoder struct {
	fc    frameCache
	spare []byte
	spans []span
}

func (c *cachingEncoder) encode(d *Data) []byte {
	b, spans := c.fc.encode(d, c.spare, c.spans)
	c.spare, c.spans = c.fc.accept(d.CallFrames, b, spans)
	return b
}

// checkEncode compares Encode, and an encode through a frame cache that has
// seen other states, with encoding/json; where says which state d is.
func checkEncode(t testing.TB, fc *cachingEncoder, d *Data, where string) {
	t.Helper()
	want := string(marshalIndent(t, d))
	require.Equalf(t, want, string(Encode(d)), "Encode differs from json.MarshalIndent (%s)", where)
	require.Equalf(t, want, string(fc.encode(d)), "cached encode differs from json.MarshalIndent (%s)", where)
}

func tm(s string) Time {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return Time{v}
}

func fullData() *Data {
	t0 := tm("2024-01-15T10:30:00.123Z")
	det := tm("2024-01-15T10:31:00Z")
	return &Data{
		OperationID: "20240115T10:30:00.123-alice-0a1b2c3d", InitiatorID: "alice",
		Description: "build", StartTime: t0, OperationState: StateCleanup, Aborted: true,
		LastHeartbeat: t0,
		CallFrames: []CallFrame{
			{ParticipantID: "alice", CallID: "call_alice_1_ab12", PID: 42, Host: "h1", StartTime: t0,
				LastHeartbeat: t0, State: FrameActive, Description: "compile", Resources: []string{"/tmp/a", "/tmp/b"}, FailOnCrash: true},
			{ParticipantID: "bob", CallID: "call_bob_1_cd34", PID: 7, StartTime: t0, LastHeartbeat: t0, State: FrameCrashed},
		},
		TempResources: []TempResource{
			{Path: "/tmp/x", Owner: 42, RegisteredAt: t0, ParticipantID: "alice", Host: "h1", RegisteredVia: ViaLocal},
			{Path: "/tmp/y", Owner: 7, RegisteredAt: t0},
		},
		Participants: []Participant{
			{ParticipantID: "alice", PID: 42, Host: "h1", Sessions: 2, JoinedAt: t0, LastHeartbeat: t0, State: ParticipantActive,
				HeartbeatIntervalMs: 5000, StaleThresholdMs: 15000},
			{ParticipantID: "dart", PID: 7, Host: "h2", Sessions: 1, JoinedAt: t0, LastHeartbeat: t0, State: ParticipantLeft},
		},
		DetectionTimestamp: &det, RemovalTimestamp: &det,
		Failure: &Failure{FailedAt: det, Reason: "boom", ParticipantID: "bob", CrashedCallIDs: []string{"call_bob_1_cd34"}},
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	nasty := []string{
		`quote " and backslash \ and slash /`,
		"control \x00 \x01 \x07 \b \f \n \r \t \x1b \x1f \x7f",
		"html <script>&amp;</script>",
		"line separators \u2028 and \u2029",
		"invalid utf-8 \xff \xfe, truncated \xe2\x82, lone continuation \x80, surrogate \xed\xa0\x80",
		"unicode ünïcödé 日本語 🎉 \ufffd",
		"",
	}
	cases := []struct {
		name string
		mod  func(d *Data)
	}{
		{"full", func(d *Data) {}},
		{"nil slices", func(d *Data) { d.CallFrames, d.TempResources, d.Participants = nil, nil, nil }},
		{"empty slices", func(d *Data) {
			d.CallFrames, d.TempResources, d.Participants = []CallFrame{}, []TempResource{}, []Participant{}
		}},
		{"no optional fields", func(d *Data) {
			d.Description, d.DetectionTimestamp, d.RemovalTimestamp, d.Failure = "", nil, nil, nil
		}},
		{"failure with nil and empty lists", func(d *Data) { d.Failure.CrashedCallIDs = nil; d.Failure.ParticipantID = "" }},
		{"failure with empty list", func(d *Data) { d.Failure.CrashedCallIDs = []string{} }},
		{"frame resources empty", func(d *Data) { d.CallFrames[0].Resources = []string{} }},
		{"idempotency keys", func(d *Data) {
			d.Keys = map[string][]string{"b/2@h": {"k3"}, "a/1@h": {"k1", "k2"}, "c/3@h": {}}
		}},
		{"zero times", func(d *Data) { d.StartTime, d.LastHeartbeat = Time{}, Time{} }},
		{"far times", func(d *Data) {
			d.StartTime = Time{time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
			d.LastHeartbeat = Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
			d.CallFrames[0].StartTime = Time{time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}
		}},
		{"local times with offsets", func(d *Data) {
			loc := time.FixedZone("X", -7*3600-30*60)
			d.StartTime = Time{time.Date(2024, 2, 29, 23, 59, 59, 123456789, loc)}
			d.CallFrames[1].LastHeartbeat = Time{time.Date(2024, 1, 1, 0, 0, 0, 999999, time.Local)}
		}},
		{"negative and large numbers", func(d *Data) {
			d.CallFrames[0].PID = -1
			d.TempResources[0].Owner = 1 << 62
			d.Participants[0].Sessions = 0
			d.Participants[0].HeartbeatIntervalMs, d.Participants[0].StaleThresholdMs = -1, 1<<40
		}},
	}
	for i, s := range nasty {
		cases = append(cases, struct {
			name string
			mod  func(d *Data)
		}{"escaping " + string(rune('a'+i)), func(d *Data) {
			d.Description, d.InitiatorID = s, s
			d.CallFrames[0].Description, d.CallFrames[0].Host = s, s
			d.CallFrames[0].Resources = []string{s, s}
			d.TempResources[0].Path = s
			d.TempResources[0].RegisteredVia = s
			d.Participants[0].State = s
			d.Failure.Reason = s
			d.Failure.CrashedCallIDs = []string{s}
			d.Keys = map[string][]string{s: {s}, "b/1@h": {s, "k"}}
		}})
	}
	fc := &cachingEncoder{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := fullData()
			c.mod(d)
			checkEncode(t, fc, d, c.name)
		})
	}
}

// TestFrameCacheFollowsChanges changes, removes, reorders and re-adds
// frames between encodes through one cache: every output must still be
// exact. As in the Store, each change is made to a copy: an encoded state
// is never modified.
func TestFrameCacheFollowsChanges(t *testing.T) {
	fc := &cachingEncoder{}
	d := benchData(12)
	d.CallFrames[3].Resources = []string{"/tmp/a", "/tmp/b"}
	checkEncode(t, fc, d, "first state")
	steps := []func(d *Data){
		func(d *Data) { d.CallFrames[0].State = FrameCleanedUp },
		func(d *Data) {
			d.CallFrames[1].LastHeartbeat = Time{d.CallFrames[1].LastHeartbeat.Add(time.Millisecond)}
		},
		func(d *Data) { d.CallFrames[3].Resources[1] = "/tmp/changed" },
		func(d *Data) { d.CallFrames[3].Resources = nil },
		func(d *Data) { d.CallFrames = d.CallFrames[1:] },
		func(d *Data) { d.CallFrames = slices.Delete(d.CallFrames, 4, 5) },
		func(d *Data) { d.CallFrames = slices.Delete(d.CallFrames, 2, 7) },
		func(d *Data) {
			d.CallFrames = append(d.CallFrames, CallFrame{CallID: d.CallFrames[0].CallID, Description: "same id, new frame"})
		},
		func(d *Data) { d.CallFrames = append(d.CallFrames, benchData(3).CallFrames...) },
		func(d *Data) { slices.Reverse(d.CallFrames) },
		func(d *Data) { d.CallFrames[2], d.CallFrames[5] = d.CallFrames[5], d.CallFrames[2] },
		func(d *Data) {
			d.CallFrames = slices.Insert(d.CallFrames, 3, CallFrame{CallID: "inserted"}, CallFrame{CallID: "inserted too"})
		},
		func(d *Data) {
			d.CallFrames[len(d.CallFrames)-1].FailOnCrash = !d.CallFrames[len(d.CallFrames)-1].FailOnCrash
		},
		func(d *Data) { d.CallFrames[1].PID++ },
		func(d *Data) { d.Description = "longer description shifts every frame" },
		func(d *Data) { d.CallFrames = nil },
		func(d *Data) { d.CallFrames = []CallFrame{} },
		func(d *Data) { d.CallFrames = benchData(5).CallFrames },
	}
	for i, step := range steps {
		d = d.Clone()
		step(d)
		checkEncode(t, fc, d, fmt.Sprintf("after step %d", i))
	}
	// Random changes, checked against encoding/json.
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		d = d.Clone()
		switch n := len(d.CallFrames); {
		case n > 0 && r.IntN(3) == 0:
			k := r.IntN(n)
			d.CallFrames = slices.Delete(d.CallFrames, k, k+1+r.IntN(min(3, n-k)))
		case n > 0 && r.IntN(3) == 0:
			d.CallFrames[r.IntN(n)].State = []string{FrameActive, FrameCrashed, FrameCleanedUp}[r.IntN(3)]
		default:
			d.CallFrames = append(d.CallFrames, CallFrame{CallID: NewCallID("r", int64(i)), PID: i})
		}
		checkEncode(t, fc, d, fmt.Sprintf("after random change %d", i))
	}
}

// TestFrameEqualSeesEveryField changes each field of CallFrame in turn: a
// field that equal does not compare would let the frame cache write a
// stale frame.
func TestFrameEqualSeesEveryField(t *testing.T) {
	base := fullData().CallFrames[0]
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		g := base
		g.Resources = append([]string(nil), base.Resources...)
		f := reflect.ValueOf(&g).Elem().Field(i)
		switch v := f.Addr().Interface().(type) {
		case *string:
			*v += "x"
		case *int:
			*v++
		case *bool:
			*v = !*v
		case *Time:
			v.Time = v.Add(time.Millisecond)
		case *[]string:
			*v = append(*v, "x")
		default:
			require.Failf(t, "field of an unknown type",
				"field %s has type %s: teach this test (and CallFrame.equal) about it", typ.Field(i).Name, f.Type())
		}
		assert.Falsef(t, base.equal(&g), "equal ignores a change of CallFrame.%s", typ.Field(i).Name)
	}
	same := base
	same.StartTime = Time{base.StartTime.In(time.FixedZone("Y", 3600))}
	assert.True(t, base.equal(&same), "equal tells apart the same instant in two zones, which encode alike")
}

func TestAppendTimeMatchesAppendFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{
		{}, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 999999, time.FixedZone("Z", 5*3600)),
	}
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(400e9)-100e9, r.Int64N(1e9)))
	}
	for _, v := range times {
		want := Time{v}.appendJSON(nil)
		require.Equalf(t, string(want), string(appendTime(nil, v)), "appendTime(%v)", v)
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("alice", "build \"x\" <y>", "/tmp/\u2028", "\xff\xfe", 42, true)
	f.Add("", "", "", "", 0, false)
	f.Add("a\x00b", "\t\n\r", "&&", "日本", -1, true)
	f.Fuzz(func(t *testing.T, a, b, c, d string, n int, flag bool) {
		data := fullData()
		data.Description, data.InitiatorID = a, b
		data.Aborted = flag
		data.CallFrames[0].Description, data.CallFrames[0].Host = c, d
		data.CallFrames[0].PID = n
		data.CallFrames[1].Resources = []string{a, b, c, d}
		data.TempResources[1].Path, data.TempResources[1].Owner = d, n
		data.TempResources[1].RegisteredVia = a
		data.Participants[0].ParticipantID = c
		data.Participants[1].HeartbeatIntervalMs, data.Participants[1].StaleThresholdMs = n, -n
		data.Failure.Reason = a + b
		if flag {
			data.CallFrames = append(data.CallFrames, CallFrame{CallID: a, Description: b})
		}
		checkEncode(t, &cachingEncoder{}, data, "fuzzed state")
	})
}

// benchData returns a state with n active frames, as a ledger writes them.
func benchData(n int) *Data {
	d := fullData()
	d.CallFrames = nil
	for i := range n {
		d.CallFrames = append(d.CallFrames, CallFrame{
			ParticipantID: "bench", CallID: NewCallID("bench", int64(i)), PID: 4242, Host: "build-host",
			StartTime: Now(), LastHeartbeat: Now(), State: FrameActive, Description: "background work", FailOnCrash: true,
		})
	}
	return d
}

// BenchmarkEncode measures the encoding of a 1,000-frame state: from
// scratch, and through a frame cache after one frame was added and one
// removed (what a call round trip does).
func BenchmarkEncode(b *testing.B) {
	d := benchData(1000)
	b.Run("scratch", func(b *testing.B) {
		for b.Loop() {
			Encode(d)
		}
	})
	b.Run("cached", func(b *testing.B) {
		fc := &cachingEncoder{}
		fc.encode(d)
		extra := CallFrame{ParticipantID: "bench", CallID: "call_bench_x_0000", State: FrameActive}
		grown := &Data{}
		*grown = *d
		grown.CallFrames = append(d.CallFrames[:len(d.CallFrames):len(d.CallFrames)], extra)
		for b.Loop() {
			fc.encode(grown)
			fc.encode(d)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.MarshalIndent(d, "", "  ")
		}
	})
}
