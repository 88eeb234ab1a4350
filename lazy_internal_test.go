package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/internal/store"
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
// operation is quiet, and so is a log line, so that stores wake no participant for it; what the
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
	require.NoError(t, opB.Log(ctx, LogInfo, "LOGGED"))
	require.NoError(t, opB.Leave(ctx, LeaveOptions{}))
	require.NoError(t, op.SetAbortFlag(ctx, true))

	s.mu.Lock()
	defer s.mu.Unlock()
	assert.Equal(t, []bool{true}, s.quiet["CALL_STARTED"])
	assert.Equal(t, []bool{true}, s.quiet["CALL_ENDED"])
	assert.Equal(t, []bool{true}, s.quiet["LOGGED"], "a change that only logs")
	assert.Equal(t, []bool{false}, s.quiet["PARTICIPANT_JOINED"])
	assert.Equal(t, []bool{false}, s.quiet["PARTICIPANT_LEFT"])
	assert.NotEmpty(t, s.quiet["ABORT_SET"])
	assert.NotContains(t, s.quiet["ABORT_SET"], true)
}

// sharedOperation makes n LocalLedgers on one new directory, participants
// p0, p1, ... whose heartbeats are a minute apart (only the store's
// wake-ups bring changes in), and one operation that p0 creates and the
// others join. It returns the directory and each one's Operation.
func sharedOperation(t *testing.T, n int) (base string, ops []*Operation) {
	ctx := context.Background()
	base = t.TempDir()
	for i := range n {
		l, err := NewLocalLedger(Options{BasePath: base, ParticipantID: fmt.Sprintf("p%d", i), NoSignalHandler: true,
			HeartbeatInterval: time.Minute, StaleThreshold: 3 * time.Minute})
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		var op *Operation
		if i == 0 {
			op, err = l.CreateOperation(ctx, CreateOptions{})
		} else {
			op, err = l.JoinOperation(ctx, ops[0].ID(), JoinOptions{})
		}
		require.NoError(t, err)
		ops = append(ops, op)
	}
	return base, ops
}

// assertFrames checks that the journal of the operation of ops, in the
// directory base, and the whole state of every participant hold the
// frames of the calls want, sorted.
func assertFrames(t *testing.T, base string, ops []*Operation, want []string) {
	t.Helper()
	ctx := context.Background()
	v, err := OpenViewer(Options{BasePath: base})
	require.NoError(t, err)
	defer v.Close()
	d, err := v.State(ctx, ops[0].ID())
	require.NoError(t, err)
	assert.Equal(t, want, frameIDs(d), "the journal's frames")
	for i, o := range ops {
		d, err := o.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, want, frameIDs(d), "participant %d's frames", i)
		assert.Equal(t, want, frameIDs(o.CachedData()), "participant %d's cached frames", i)
	}
}

// TestLazyViewDecidesCallIDsOnTheWholeState: a participant that put off
// another's routine record (the frame of call "shared") still refuses a
// frame of the same id: the change is decided again on the whole state.
func TestLazyViewDecidesCallIDsOnTheWholeState(t *testing.T) {
	ctx := context.Background()
	_, ops := sharedOperation(t, 2)
	op, opB := ops[0], ops[1]

	require.NoError(t, op.CreateCallFrame(ctx, "shared"))
	err := opB.CreateCallFrame(ctx, "shared")
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
	base, ops := sharedOperation(t, 3)
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
	assertFrames(t, base, ops, want)
}

func frameIDs(d *Data) []string {
	var ids []string
	for _, f := range d.CallFrames {
		ids = append(ids, f.CallID)
	}
	slices.Sort(ids)
	return ids
}

// TestScanRoutine: a body marked routine is taken as such, and its call
// ids read, only in the form the ledger writes: one that hides an op that
// is not a frame's, or a call id, behind the mark is applied at once.
func TestScanRoutine(t *testing.T) {
	ids, ok := scanRoutine([]byte(`{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c1","participantId":"p","description":"a b"}},{"op":"unframe","key":"c2"}]}`))
	assert.True(t, ok)
	assert.Equal(t, []string{"c1", "c2"}, ids)

	for name, body := range map[string]string{
		"not marked":          `{"ops":[{"op":"frame","frame":{"callId":"c1"}}]}`,
		"an abort":            `{"routine":true,"ops":[{"op":"head","head":{"aborted":true}}]}`,
		"an op in upper case": `{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c1"}},{"OP":"head"}]}`,
		"an escaped key":      `{"routine":true,"ops":[{"o\u0070":"head"}]}`,
		"an escaped call id":  `{"routine":true,"ops":[{"op":"frame","frame":{"callId":"c\"1"}}]}`,
		"a space":             `{"routine":true,"ops":[{"op" :"head"}]}`,
		"a call id in case":   `{"routine":true,"ops":[{"op":"frame","frame":{"CALLID":7}}]}`,
		"an op not a string":  `{"routine":true,"ops":[{"op":1}]}`,
	} {
		_, ok := scanRoutine([]byte(body))
		assert.False(t, ok, name)
	}
	_, ok = scanRoutine([]byte(`{"routine":true,"ops":null}`))
	assert.True(t, ok, "a record that only logs")
	ids, ok = scanRoutine([]byte(`{"routine":true,"ops":[{"op":"frame","frame":{"CallID":"c3"}}]}`))
	assert.True(t, ok)
	assert.Equal(t, []string{"c3"}, ids, "keys are matched as encoding/json matches them")
}

// TestPutOffNames: a view finds the call ids its put-off records name.
func TestPutOffNames(t *testing.T) {
	ids := []string{"c1", "c2"}
	v := view{lazy: &putOff{ids: ids, mask: idBit("c1") | idBit("c2"), n: 1}}
	assert.True(t, v.names("c2"))
	assert.False(t, v.names("c3"))
	assert.True(t, v.mentions([]op{{Op: opUnframe, Key: "c1"}}))
	assert.False(t, v.mentions([]op{{Op: opFrame, Frame: &store.CallFrame{CallID: "c4"}}}))
}

// hostileAppend appends a record of body to operation id of the ledger
// directory base behind the ledger's back.
func hostileAppend(t *testing.T, base, id string, body []byte) {
	t.Helper()
	d, err := dirstore.Open(base, dirstore.Options{})
	require.NoError(t, err)
	defer d.Close()
	_, err = d.Update(context.Background(), id, 0, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: body, Log: []journal.LogLine{{Level: "INFO", Participant: "x", Message: "FORGED"}}}}}, nil
	})
	require.NoError(t, err)
}

// TestCorruptRecordMarkedRoutineIsReported: a record marked routine that
// does not apply is corruption to a participant that puts such records
// off, as to any reader: at once when it is not in the form of a routine
// record, at the next heartbeat when only its contents are wrong.
func TestCorruptRecordMarkedRoutineIsReported(t *testing.T) {
	ctx := context.Background()
	base, ops := sharedOperation(t, 2)
	hostileAppend(t, base, ops[0].ID(), []byte(`{"routine":true,"ops":[{"op":"bogus"}]}`))
	_, err := StartCall[int](ctx, ops[1], CallOptions[int]{})
	var ce *CorruptError
	require.ErrorAs(t, err, &ce, "a change on a journal with an op nobody knows")

	base, ops = sharedOperation(t, 2)
	hostileAppend(t, base, ops[0].ID(), []byte(`{"routine":true,"ops":[{"op":"frame","frame":{"callId":""}}]}`))
	_, err = StartCall[int](ctx, ops[1], CallOptions[int]{})
	require.NoError(t, err, "a frame put off is not looked at by a call")
	_, err = ops[1].Heartbeat(ctx)
	require.ErrorAs(t, err, &ce, "the heartbeat applies what was put off")
}

// TestRoutineMarkAlsoOnAnAbort: an abort in a record marked routine (a
// foreign writer's) reaches a participant at once all the same.
func TestRoutineMarkAlsoOnAnAbort(t *testing.T) {
	ctx := context.Background()
	base, ops := sharedOperation(t, 2)
	d, err := dirstore.Open(base, dirstore.Options{})
	require.NoError(t, err)
	cur, err := (&storeBackend{s: d}).read(ctx, ops[0].ID(), view{})
	require.NoError(t, err)
	require.NoError(t, d.Close())
	h := head(cur.d)
	h.Aborted = true
	b, err := encodeBody(true, []op{{Op: opHead, Head: h}}, requestKey{})
	require.NoError(t, err)
	hostileAppend(t, base, ops[0].ID(), b)
	select {
	case <-ops[1].Aborted():
	case <-time.After(10 * time.Second):
		t.Fatal("the abort did not reach the participant")
	}
}

// TestLazyViewsUnderConcurrentCalls: goroutines of two processes start and
// end calls at once (a process's own records are then put off by the view
// of a sibling goroutine), while others read CachedData and beat; in the
// end every participant's whole state has the journal's frames.
func TestLazyViewsUnderConcurrentCalls(t *testing.T) {
	ctx := context.Background()
	base, ops := sharedOperation(t, 2)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []string
	)
	for _, o := range ops {
		for range 3 {
			wg.Go(func() {
				for i := range 100 {
					c, err := StartCall[int](ctx, o, CallOptions[int]{})
					if !assert.NoError(t, err) {
						return
					}
					if i%5 == 0 {
						mu.Lock()
						open = append(open, c.ID())
						mu.Unlock()
						continue
					}
					assert.NoError(t, c.End(ctx, i))
				}
			})
		}
		wg.Go(func() {
			for range 50 {
				o.CachedData()
				_, err := o.Heartbeat(ctx)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	slices.Sort(open)
	assertFrames(t, base, ops, open)
}
