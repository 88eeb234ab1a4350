package ledger

import (
	"fmt"
	"path/filepath"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// openStore returns the store the server serves: o.Store, or the ledger
// directory o.BasePath opened, with its absolute path (which error
// messages hide).
func (o ServerOptions) openStore() (journal.Store, string, error) {
	if o.Store != nil {
		return o.Store, "", nil
	}
	dir, err := filepath.Abs(o.BasePath)
	if err != nil {
		return nil, "", fmt.Errorf("ledger: ServerOptions.BasePath: %w", err)
	}
	st, err := dirstore.Open(dir, o.dirOptions())
	if err != nil {
		return nil, "", fmt.Errorf("ledger: open %s: %w", dir, err)
	}
	return st, dir, nil
}
