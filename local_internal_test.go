package ledger

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPollDirectoryReachesTheStore: PollDirectory makes the directory
// store poll every LivenessPoll; without it the store waits for events.
func TestPollDirectoryReachesTheStore(t *testing.T) {
	o, err := Options{BasePath: t.TempDir(), PollDirectory: true, LivenessPoll: 7 * time.Millisecond}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 7*time.Millisecond, dirOptions(o).Poll)

	o.PollDirectory = false
	assert.Zero(t, dirOptions(o).Poll, "a store that waits for events")
}
