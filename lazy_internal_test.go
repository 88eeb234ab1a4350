package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// quietLog is a store that remembers, for each change appended, the first
// word of its first log line and whether it was Quiet.
type quietLog struct {
	journal.Store
	mu    sync.Mutex
	quiet map[string][]bool
}

func (q *quietLog) Update(ctx context.Context, id string, after journal.Rev, fn func(journal.Tail) (journal.Change, error)) (journal.Tail, error) {
	var last journal.Change
	tail, err := q.Store.Update(ctx, id, after, func(t journal.Tail) (journal.Change, error) {
		c, err := fn(t)
		last = c
		return c, err
	})
	if err == nil && len(last.Records) > 0 && len(last.Records[0].Log) > 0 {
		word, _, _ := strings.Cut(last.Records[0].Log[0].Message, " ")
		q.mu.Lock()
		q.quiet[word] = append(q.quiet[word], last.Quiet)
		q.mu.Unlock()
	}
	return tail, err
}

// TestRoutineChangesAreQuiet: a call that starts or ends on a running
// operation is quiet, so that stores wake no participant for it; what the
// participants react to is not.
func TestRoutineChangesAreQuiet(t *testing.T) {
	dir, err := dirstore.Open(t.TempDir(), dirstore.Options{})
	require.NoError(t, err)
	s := &quietLog{Store: dir, quiet: make(map[string][]bool)}
	ctx := context.Background()
	open := func(who string) Ledger {
		l, err := Open(s, Options{ParticipantID: who, NoSignalHandler: true})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := open("alice"), open("bob")
	op, err := a.CreateOperation(ctx, CreateOptions{})
	require.NoError(t, err)
	opB, err := b.JoinOperation(ctx, op.ID(), JoinOptions{})
	require.NoError(t, err)
	call, err := StartCall[int](ctx, opB, CallOptions[int]{})
	require.NoError(t, err)
	require.NoError(t, call.End(ctx, 1))
	require.NoError(t, opB.Leave(ctx, LeaveOptions{}))
	require.NoError(t, op.SetAbortFlag(ctx, true))

	s.mu.Lock()
	defer s.mu.Unlock()
	assert.Equal(t, []bool{true}, s.quiet["CALL_STARTED"])
	assert.Equal(t, []bool{true}, s.quiet["CALL_ENDED"])
	assert.Equal(t, []bool{false}, s.quiet["PARTICIPANT_JOINED"])
	assert.Equal(t, []bool{false}, s.quiet["PARTICIPANT_LEFT"])
	assert.NotEmpty(t, s.quiet["ABORT_SET"])
	assert.NotContains(t, s.quiet["ABORT_SET"], true)
}

// localLedgers returns n LocalLedgers on one new directory, participants
// p0, p1, ...
func localLedgers(t *testing.T, n int) []*LocalLedger {
	base := t.TempDir()
	var ls []*LocalLedger
	for i := range n {
		l, err := NewLocalLedger(Options{BasePath: base, ParticipantID: fmt.Sprintf("p%d", i), NoSignalHandler: true})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		ls = append(ls, l)
	}
	return ls
}

// TestLazyViewDecidesCallIDsOnTheWholeState: a participant that put off
// another's routine record (the frame of call "shared") still refuses a
// frame of the same id: the change is decided again on the whole state.
func TestLazyViewDecidesCallIDsOnTheWholeState(t *testing.T) {
	ctx := context.Background()
	ls := localLedgers(t, 2)
	op, err := ls[0].CreateOperation(ctx, CreateOptions{})
	require.NoError(t, err)
	opB, err := ls[1].JoinOperation(ctx, op.ID(), JoinOptions{})
	require.NoError(t, err)

	require.NoError(t, op.CreateCallFrame(ctx, "shared"))
	err = opB.CreateCallFrame(ctx, "shared")
	require.ErrorIs(t, err, ErrCallExists)

	d, err := opB.State(ctx)
	require.NoError(t, err)
	n := 0
	for _, f := range d.CallFrames {
		if f.CallID == "shared" {
			n++
		}
	}
	assert.Equal(t, 1, n, "frames of call shared")
}

// TestLazyViewsAgreeWithTheJournal: participants that do calls in turn, in
// a random order, keep others' routine records undecoded; the whole state
// each of them gets in the end (State) has the frames that a reader of the
// journal finds, compactions included.
func TestLazyViewsAgreeWithTheJournal(t *testing.T) {
	ctx := context.Background()
	ls := localLedgers(t, 3)
	op, err := ls[0].CreateOperation(ctx, CreateOptions{})
	require.NoError(t, err)
	ops := []*Operation{op}
	for _, l := range ls[1:] {
		o, err := l.JoinOperation(ctx, op.ID(), JoinOptions{})
		require.NoError(t, err)
		ops = append(ops, o)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	open := make([][]*Call[int], len(ops))
	for i := range 700 { // past compactAfter: snapshots taken with records put off
		k := rng.IntN(len(ops))
		if len(open[k]) > 0 && rng.IntN(2) == 0 {
			j := rng.IntN(len(open[k]))
			require.NoError(t, open[k][j].End(ctx, i))
			open[k] = slices.Delete(open[k], j, j+1)
			continue
		}
		c, err := StartCall[int](ctx, ops[k], CallOptions[int]{})
		require.NoError(t, err)
		open[k] = append(open[k], c)
	}
	var want []string
	for _, cs := range open {
		for _, c := range cs {
			want = append(want, c.ID())
		}
	}
	slices.Sort(want)

	v, err := OpenViewer(Options{BasePath: ls[0].opts.BasePath})
	require.NoError(t, err)
	defer v.Close()
	d, err := v.State(ctx, op.ID())
	require.NoError(t, err)
	assert.Equal(t, want, frameIDs(d), "the journal's frames")
	for i, o := range ops {
		d, err := o.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, frameIDs(d), "participant %d's frames", i)
	}
}

func frameIDs(d *Data) []string {
	var ids []string
	for _, f := range d.CallFrames {
		ids = append(ids, f.CallID)
	}
	slices.Sort(ids)
	return ids
}

// TestNamedIDs: the ids of a record body are read without decoding it; a
// name with an escape stands for any id.
func TestNamedIDs(t *testing.T) {
	body := []byte(`{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c1","participantId":"p"}},{"op":"unframe","key":"c2"}]}`)
	assert.Equal(t, []string{"c1", "c2"}, namedIDs(nil, body))
	escaped := []byte(`{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c\"1"}}]}`)
	v := view{lazy: &putOff{ids: namedIDs(nil, escaped), mask: ^uint64(0), n: 1}}
	assert.True(t, v.names(`c"1`))
	assert.True(t, v.names("anything"), "an id with an escape may be any")
	v = view{lazy: &putOff{ids: namedIDs(nil, body), mask: idBit("c1") | idBit("c2"), n: 1}}
	assert.True(t, v.names("c2"))
	assert.False(t, v.names("c3"))
}
