package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAbortAndFailHoldTheirPromiseForEveryCaller: abort and fail take
// effect once, and every caller, the ones that race the first included,
// returns only when what they promise holds: Aborted closed, or the
// operation's context cancelled with the failure. A second caller that
// returned early once let SetAbortFlag return with Aborted still open
// (the monitor had seen the abort first and was preempted half-way).
func TestAbortAndFailHoldTheirPromiseForEveryCaller(t *testing.T) {
	l, err := NewLocalLedger(Options{BasePath: t.TempDir(), NoSignalHandler: true})
	require.NoError(t, err)
	defer l.Close()
	c := l.client
	race := func(t *testing.T, do func(st *opState) error) {
		for range 2000 {
			st := c.newOpState("20261201T00:00:00.000-once-00000001")
			start := make(chan struct{})
			errs := make(chan error, 4)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					<-start
					errs <- do(st)
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		}
	}
	t.Run("abort", func(t *testing.T) {
		race(t, func(st *opState) error {
			st.abort()
			select {
			case <-st.aborted:
				return nil
			default:
				return errors.New("abort returned with Aborted open")
			}
		})
	})
	t.Run("fail", func(t *testing.T) {
		race(t, func(st *opState) error {
			st.fail(OperationFailedInfo{OperationID: st.id})
			if !errors.Is(context.Cause(st.ctx), ErrOperationFailed) {
				return errors.New("fail returned before the context was cancelled with the failure")
			}
			return nil
		})
	})
}
