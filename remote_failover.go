package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// A RemoteClient may know several servers of one ledger (Options.ServerURL
// and ServerURLs: stateless fronts of one store, such as `ledger serve
// --etcd`). It uses one at a time; a request that cannot reach it (a
// connection error, an attempt that timed out, a 503) is sent again to
// the next at once, with the same idempotency key, so that a change the
// first server made before it died is not made twice: the next server
// finds the key among the records the client has not seen. Streams open
// again on the next server. The client stays on a server that works.

// servers is the list of servers of a ledger and the one in use.
type servers struct {
	mu   sync.Mutex // guards cur
	list []string   // set before use, never changed
	cur  int
}

// current returns the server in use and its index.
func (s *servers) current() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list[s.cur], s.cur
}

// failed moves past server i, if it is still the one in use, and reports
// whether another server is in use now.
func (s *servers) failed(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.list) < 2 || i < 0 {
		return false
	}
	if s.cur == i {
		s.cur = (i + 1) % len(s.list)
	}
	return true
}

// joined returns the servers, the one in use first, separated by commas
// (the form of EnvServerURL).
func (s *servers) joined() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(append(append([]string(nil), s.list[s.cur:]...), s.list[:s.cur]...), ",")
}

// connectAny checks the server URLs raw and uses the first that answers
// as a ledger server; the others are kept for failover. A URL that is not
// a server URL is an error, whether it answers or not.
func (b *remoteBackend) connectAny(ctx context.Context, raw []string) error {
	seen := make(map[string]bool)
	for _, r := range raw {
		if r == "" {
			continue
		}
		base, err := normalizeURL(r)
		if err != nil {
			return err
		}
		if !seen[base] {
			seen[base] = true
			b.srv.list = append(b.srv.list, base)
		}
	}
	if len(b.srv.list) == 0 {
		return errors.New("ledger: Options.ServerURLs holds no URL")
	}
	var errs []error
	for i, base := range b.srv.list {
		if _, err := b.connect(ctx, base); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		b.srv.cur = i
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("%w: none of %d servers answered: %w", ErrNoServer, len(b.srv.list), errors.Join(errs...))
}
