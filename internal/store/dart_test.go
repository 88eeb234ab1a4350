package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Dart package writes DateTime.now().toIso8601String(): the local time
// of its machine, without an offset. Such a time is read in the local
// zone of the reader (a ledger directory is shared on one machine), and
// written back in UTC.
func TestDartTimeIsLocalTime(t *testing.T) {
	saved := time.Local
	t.Cleanup(func() { time.Local = saved })
	time.Local = time.FixedZone("IST", 5*3600+30*60)

	got, err := ParseTime("2026-03-14T09:15:02.418912")
	require.NoError(t, err)
	assert.True(t, got.Equal(time.Date(2026, 3, 14, 3, 45, 2, 418912000, time.UTC)), "got %v", got)
	assert.Equal(t, time.UTC, got.Location(), "times are kept in UTC")
	assert.Equal(t, `"2026-03-14T03:45:02.418Z"`, string(got.appendJSON(nil)))

	// With an offset or Z, the offset says the zone.
	got, err = ParseTime("2026-03-14T09:15:02.418Z")
	require.NoError(t, err)
	assert.True(t, got.Equal(time.Date(2026, 3, 14, 9, 15, 2, 418000000, time.UTC)))
}

// The binding of an operation to the participant its Dart clients act
// as is part of the state document.
func TestEncodeDartParticipant(t *testing.T) {
	var fc cachingEncoder
	d := fullData()
	d.DartParticipant = Key("alice", 42, "h1")
	checkEncode(t, &fc, d, "bound")
	assert.Contains(t, string(Encode(d)), `"dartParticipant": "alice/42@h1"`)
	d.DartParticipant = ""
	checkEncode(t, &fc, d, "unbound")
	assert.NotContains(t, string(Encode(d)), "dartParticipant")
}

// A Dart server writes pid -1 into the frames of a client whose pid it
// does not know; other negative pids are no pids.
func TestDartUnknownPIDInFrames(t *testing.T) {
	f := fullData().CallFrames[0]
	f.PID = UnknownPID
	assert.Nil(t, ValidateFrame(&f))
	f.PID = -2
	assert.NotNil(t, ValidateFrame(&f))
	p := fullData().Participants[0]
	p.PID = UnknownPID
	assert.NotNil(t, ValidateParticipant(&p), "a participant record needs a real pid")
}
