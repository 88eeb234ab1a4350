package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
)

// The environment variables of a worker process of a ledger over etcd
// (beside ledger.EnvStore, set to "etcd"), which JoinFromEnv reads.
const (
	// EnvEndpoints holds the etcd endpoints, separated by commas.
	EnvEndpoints = "LEDGER_ETCD_ENDPOINTS"
	// EnvPrefix holds the ledger's key prefix.
	EnvPrefix = "LEDGER_ETCD_PREFIX"
)

// Kind is the value of ledger.EnvStore for a ledger over etcd.
const Kind = "etcd"

// Config says how to reach etcd and where in it the ledger lives.
type Config struct {
	// Client configures the etcd client: endpoints, TLS, user, timeouts.
	// Zero DialTimeout means 5s.
	Client clientv3.Config
	// Prefix is the key prefix of the ledger. Zero means DefaultPrefix.
	Prefix string
}

// Open connects to etcd and returns a Store that owns its client (Close
// closes it). o.Prefix is taken from c.Prefix.
func Open(ctx context.Context, c Config, o StoreOptions) (*Store, error) {
	if len(c.Client.Endpoints) == 0 {
		return nil, errors.New("etcd: Config.Client.Endpoints is empty")
	}
	cc := c.Client // its Context, if any, ends the client: not ctx
	if cc.DialTimeout == 0 {
		cc.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %s: %w", strings.Join(cc.Endpoints, ","), err)
	}
	o.Prefix = c.Prefix
	s, err := New(cli, o)
	if err != nil {
		cli.Close()
		return nil, err
	}
	s.owned = true
	if err := s.probe(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// probe checks that etcd answers within ctx (or 5s).
func (s *Store) probe(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if _, err := s.cli.Get(ctx, s.prefix+"live/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd: %s does not answer: %w", strings.Join(s.cli.Endpoints(), ","), err)
	}
	return nil
}

// Connect returns a ledger over etcd, with the behaviour of the other
// backends (see ledger.Open): the rules run in this process, each
// participant process holds an etcd lease, and every change reaches the
// others by etcd's watches. o.MaxBackups bounds the archived operations
// of the prefix; o's fields of a directory or a server must be zero.
// Close closes the connection to etcd.
func Connect(ctx context.Context, c Config, o ledger.Options) (ledger.Ledger, error) {
	s, err := Open(ctx, c, StoreOptions{MaxBackups: o.MaxBackups})
	if err != nil {
		return nil, err
	}
	o.MaxBackups = 0
	l, err := ledger.Open(s, o)
	if err != nil {
		s.Close()
		return nil, err
	}
	return l, nil
}

// WorkerEnv implements ledger.StoreLocator: workers get the endpoints
// and the prefix. Credentials and TLS settings are not passed: a worker
// that needs them sets them in the Config it gives JoinFromEnv.
func (s *Store) WorkerEnv() []string {
	return []string{
		ledger.EnvStore + "=" + Kind,
		EnvEndpoints + "=" + strings.Join(s.cli.Endpoints(), ","),
		EnvPrefix + "=" + s.prefix,
	}
}

// JoinFromEnv is ledger.JoinFromEnv for the workers of a ledger over
// etcd: it connects to the endpoints and prefix of the environment
// (EnvEndpoints, EnvPrefix), with the rest of c (TLS, credentials), and
// joins the operation ledger.EnvOperationID. An environment of a ledger
// directory or server is joined as ledger.JoinFromEnv does, so one worker
// program serves orchestrators of every backend. Without
// ledger.EnvOperationID it returns ledger.ErrNoWorkerEnv.
//
// The caller owns both results: it leaves the operation and closes the
// ledger when done. On error, nothing is left open.
func JoinFromEnv(ctx context.Context, c Config, o ledger.Options, jo ledger.JoinOptions) (ledger.Ledger, *ledger.Operation, error) {
	id := os.Getenv(ledger.EnvOperationID)
	if id == "" {
		return nil, nil, ledger.ErrNoWorkerEnv
	}
	if os.Getenv(ledger.EnvStore) != Kind {
		return ledger.JoinFromEnv(ctx, o, jo)
	}
	if eps := os.Getenv(EnvEndpoints); eps != "" {
		c.Client.Endpoints = strings.Split(eps, ",")
	}
	if p := os.Getenv(EnvPrefix); p != "" {
		c.Prefix = p
	}
	l, err := Connect(ctx, c, o)
	if err != nil {
		return nil, nil, err
	}
	op, err := l.JoinOperation(ctx, id, jo)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, op, nil
}
