// Package history fills a ledger directory with archived operations, for
// the commands that check that a long history costs nothing on the paths
// that do not look at it.
package history

import (
	"context"
	"sync"

	"github.com/tomdist/ledger"
)

// Archive creates n operations in dir and completes each, so that dir's
// backup folder holds n archived operations. It keeps them all (MaxBackups
// negative); a ledger that later completes an operation in dir prunes them
// unless it keeps them too.
func Archive(ctx context.Context, dir string, n int) error {
	l, err := ledger.NewLocalLedger(ledger.Options{BasePath: dir, ParticipantID: "history", NoSignalHandler: true, MaxBackups: -1})
	if err != nil {
		return err
	}
	defer l.Close()
	const workers = 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "history"})
				if err == nil {
					err = op.Complete(ctx)
				}
				errs[w] = err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
