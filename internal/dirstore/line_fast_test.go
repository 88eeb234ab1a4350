package dirstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzDecodeLineFast: whatever the fast decoder of a record line accepts,
// encoding/json decodes to the same line; and it accepts the lines that
// appendFramed writes.
func FuzzDecodeLineFast(f *testing.F) {
	f.Add([]byte(`{"rev":2,"time":"2026-12-01T08:24:51.178Z","log":[{"l":"INFO","p":"a","m":"CALL_STARTED call_a_1_1340 "}],"logEnd":[115,0]}`))
	f.Add([]byte(`{"rev":3,"time":"2026-12-01T08:24:51.178046101Z","logEnd":[174,0]}`))
	f.Add([]byte(`{"rev":3,"time":"2026-12-01T08:24:51Z","logEnd":[174,9],"archive":true}`))
	f.Add([]byte(`{"rev":3,"time":"2026-12-01T08:24:51Z","log":[{"l":"INFO","p":"a","m":"x"},{"l":"DEBUG","p":"b","m":"y\u00e9"}],"logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":03,"time":"2026-12-01T08:24:51Z","logEnd":[1,2]}`))
	f.Add([]byte(`{"rev":1,"time":"2026-12-01T08:24:51+02:00","logEnd":[1,2]}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		var fast line
		if !decodeLineFast(js, &fast) {
			return
		}
		var slow line
		require.NoError(t, json.Unmarshal(js, &slow), "accepted by the fast decoder only")
		assert.Equal(t, slow.Rev, fast.Rev)
		assert.True(t, slow.Time.Equal(fast.Time), "time %v, fast %v", slow.Time, fast.Time)
		assert.Equal(t, slow.Time.Location().String(), fast.Time.Location().String())
		assert.Equal(t, slow.Log, fast.Log)
		assert.Equal(t, slow.LogEnd, fast.LogEnd)
		assert.Equal(t, slow.Archive, fast.Archive)
	})
}

// TestDecodeLineFastReadsWhatIsWritten: the lines the store writes take
// the fast way.
func TestDecodeLineFastReadsWhatIsWritten(t *testing.T) {
	for _, l := range []line{
		{Rev: 7, Time: time.Date(2026, 12, 1, 8, 0, 0, 123456789, time.UTC), Log: []logEntry{{"INFO", "alice", "CALL_STARTED call_alice_1_ab12 build"}}, LogEnd: [2]int64{100, 3}},
		{Rev: 8, Time: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), LogEnd: [2]int64{1 << 40, 0}},
		{Rev: 8, Time: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), Archive: true},
	} {
		js, err := json.Marshal(l)
		require.NoError(t, err)
		var got line
		require.True(t, decodeLineFast(js, &got), "%s", js)
		assert.Equal(t, l.Rev, got.Rev)
		assert.True(t, l.Time.Equal(got.Time))
		assert.Equal(t, l.Log, got.Log)
		assert.Equal(t, l.LogEnd, got.LogEnd)
		assert.Equal(t, l.Archive, got.Archive)
	}
}
