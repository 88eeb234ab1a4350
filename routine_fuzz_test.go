package ledger

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/store"
)

// FuzzScanRoutine: a record that scanRoutine takes as routine and that
// applies changes nothing but call frames (and idempotency keys), and the
// call ids of the frames it adds, changes or removes are among those
// scanRoutine read. A reader that puts such a record off thus misses no
// abort, failure, participant or temp resource, and no call id it must
// check; one that does not apply is corruption, reported when it is
// applied.
func FuzzScanRoutine(f *testing.F) {
	for _, s := range []string{
		`{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c1","participantId":"alice","pid":7,"host":"h","state":"active","startTime":"2026-12-01T10:00:00.000Z","lastHeartbeat":"2026-12-01T10:00:00.000Z"}}]}`,
		`{"routine":true,"ops":[{"op":"unframe","key":"call_alice_1_ab12"}],"key":"k","by":"p 7 h"}`,
		`{"routine":true,"ops":null}`,
		`{"routine":true,"Ops":[{}]}`,
		`{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c1"}},{"OP":"head"}]}`,
		`{"routine":true,"ops":[{"op":"frame","frame":{"CallID":"c3"}}],"Ops":[{"op":"unframe","Key":"call_alice_1_ab12"}]}`,
		`{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c1"},"key":"x","head":{"aborted":true}}]}`,
	} {
		f.Add([]byte(s))
	}
	// An abort that applies, behind an op key in another case.
	h := head(fuzzState())
	h.Aborted = true
	abort, err := encodeBody(true, []op{{Op: opHead, Head: h}}, requestKey{})
	require.NoError(f, err)
	f.Add(bytes.Replace(abort, []byte(`"op":"head"`), []byte(`"OP":"head"`), 1))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ids, ok := scanRoutine(raw)
		if !ok {
			return
		}
		before := fuzzState()
		after, err := apply(before.Clone(), raw)
		if err != nil {
			return
		}
		a, b := *before, *after
		a.CallFrames, b.CallFrames, a.Keys, b.Keys = nil, nil, nil, nil
		require.Equal(t, string(store.Encode(&a)), string(store.Encode(&b)), "more than frames changed by %s", raw)
		for _, f := range after.CallFrames {
			if j := before.Frame(f.CallID); j < 0 || !f.Equal(&before.CallFrames[j]) {
				require.True(t, slices.Contains(ids, f.CallID), "call %q added or changed by %s, not read (read %q)", f.CallID, raw, ids)
			}
		}
		for _, f := range before.CallFrames {
			if after.Frame(f.CallID) < 0 {
				require.True(t, slices.Contains(ids, f.CallID), "call %q removed by %s, not read (read %q)", f.CallID, raw, ids)
			}
		}
	})
}
