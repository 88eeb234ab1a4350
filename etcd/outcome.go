package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tomdist/ledger/journal"
)

// A transaction whose answer is lost (the connection broke, etcd timed
// out the request) may or may not have been applied, and may still be, as
// long as its proposal is in flight. Every change names itself in the
// head it writes (head.Tx), and a Store that did not hear the answer
// sends the very same transaction again until it hears one: its compare
// lets at most one of the copies apply. A copy that fails the compare
// then asks which change came right after the head it compared: if that
// one bears its name, the change landed, once.

// resends bounds how many times a transaction with a lost answer is sent
// again before the Update reports that its outcome is unknown.
const resends = 20

// errUnknown says that a change may or may not have been applied.
var errUnknown = errors.New("the outcome of the change is unknown")

// newTx returns a fresh name for a change.
func newTx() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sendTxn commits txn, sending it again while its answer is lost; unsure
// reports that an earlier copy's answer was lost (so that the change may
// be in etcd though this copy failed its compare).
func (s *Store) sendTxn(ctx context.Context, txn func() clientv3.Txn) (resp *clientv3.TxnResponse, unsure bool, err error) {
	for i := 0; ; i++ {
		resp, err = txn().Commit()
		if err == nil {
			return resp, unsure, nil
		}
		if refused(err) && !unsure {
			return nil, false, fmt.Errorf("etcd: %w", err)
		}
		if ctx.Err() != nil || i == resends || !pause(ctx, time.Duration(i+1)*50*time.Millisecond) {
			if unsure || ctx.Err() == nil {
				return nil, true, fmt.Errorf("%w: %w", errUnknown, unreachable(ctx, err))
			}
			return nil, true, unreachable(ctx, err)
		}
		unsure = true
	}
}

// refused reports whether err is etcd's answer that it did not apply a
// request (too large, not permitted, invalid), rather than a lost or
// late answer.
func refused(err error) bool {
	var ee rpctypes.EtcdError
	code := codes.Unknown
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	switch code {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated,
		codes.ResourceExhausted, codes.FailedPrecondition, codes.OutOfRange,
		codes.NotFound, codes.AlreadyExists, codes.Unimplemented:
		return true
	}
	return false
}

// followed returns the head that followed, on the head key of id, the
// version of etcd revision rev: the change that won the compare against
// it.
func (s *Store) followed(ctx context.Context, id string, rev int64) (head, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range s.cli.Watch(ctx, s.headKey(id), clientv3.WithRev(rev+1), clientv3.WithFilterDelete()) {
		if err := wr.Err(); err != nil {
			return head{}, fmt.Errorf("%w: %w", errUnknown, err)
		}
		for _, ev := range wr.Events {
			return decodeHead(ev.Kv.Value, ev.Kv.ModRevision)
		}
	}
	return head{}, fmt.Errorf("%w: etcd: %w", errUnknown, context.Cause(ctx))
}

// created returns the head that created the journal of id.
func (s *Store) created(ctx context.Context, id string) (head, error) {
	resp, err := s.cli.Get(ctx, s.headKey(id))
	if err != nil {
		return head{}, fmt.Errorf("%w: %w", errUnknown, unreachable(ctx, err))
	}
	if len(resp.Kvs) == 0 {
		return head{}, fmt.Errorf("%w: %s is gone", errUnknown, id)
	}
	first, err := s.cli.Get(ctx, s.headKey(id), clientv3.WithRev(resp.Kvs[0].CreateRevision))
	if err != nil {
		return head{}, fmt.Errorf("%w: %w", errUnknown, unreachable(ctx, err))
	}
	if len(first.Kvs) == 0 {
		return head{}, fmt.Errorf("%w: %s has no first head", errUnknown, id)
	}
	return decodeHead(first.Kvs[0].Value, first.Kvs[0].ModRevision)
}

func decodeHead(v []byte, mod int64) (head, error) {
	var h head
	if err := json.Unmarshal(v, &h); err != nil {
		return head{}, fmt.Errorf("%w: head: %v", journal.ErrCorrupt, err)
	}
	h.mod = mod
	return h, nil
}
