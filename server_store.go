package ledger

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// openStore returns the store the server serves: o.Store, or the ledger
// directory o.BasePath opened, with its absolute path (which error
// messages hide). onLockWait hears how long changes waited for a lock of
// the directory.
func (o ServerOptions) openStore(onLockWait func(time.Duration)) (journal.Store, string, error) {
	if o.Store != nil {
		return o.Store, "", nil
	}
	dir, err := filepath.Abs(o.BasePath)
	if err != nil {
		return nil, "", fmt.Errorf("ledger: ServerOptions.BasePath: %w", err)
	}
	do := o.dirOptions()
	do.OnLockWait = onLockWait
	st, err := dirstore.Open(dir, do)
	if err != nil {
		return nil, "", fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	return st, dir, nil
}
