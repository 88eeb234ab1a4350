package ledger

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tomdist/ledger/internal/wire"
)

// TestMetricsAllocateNothingPerRequest: counting a request, once its
// route and status were seen, and a lock wait allocate nothing.
func TestMetricsAllocateNothingPerRequest(t *testing.T) {
	m := newServerMetrics(&Server{})
	m.observe(wire.PathCallStart, 200, time.Millisecond, false)
	m.observe("/nope", 404, time.Millisecond, false)
	allocs := testing.AllocsPerRun(1000, func() {
		m.observe(wire.PathCallStart, 200, time.Millisecond, false)
		m.observe("/unknown/path", 404, time.Millisecond, false)
		if m.streamOpened(wire.PathStream) {
			m.observe(wire.PathStream, 200, time.Second, true)
		}
		m.lockWaited(time.Millisecond)
	})
	assert.Zero(t, allocs)
}
