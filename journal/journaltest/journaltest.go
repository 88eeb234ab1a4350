// Package journaltest checks that a journal.Store keeps the contract of
// package journal, as fstest.TestFS checks a file system. A store's own
// tests call Run:
//
//	func TestConformance(t *testing.T) {
//		journaltest.Run(t, func(t testing.TB) journaltest.Pair {
//			s1, s2 := openTwoStoresOnFreshStorage(t)
//			return journaltest.Pair{A: s1, B: s2}
//		})
//	}
package journaltest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger/journal"
)

// Pair is two stores over the same fresh storage, as two processes would
// open it. A and B may be the same Store if the implementation cannot
// open two; the tests of sharing are then weaker.
type Pair struct {
	A, B journal.Store // the two stores (one Store twice if it cannot open two)
	// Host is the host name the stores give members of this process; zero
	// means the stores accept any.
	Host string
}

// Run runs the conformance tests. open is called once per test and must
// return stores over fresh, empty storage; the stores are closed by Run.
func Run(t *testing.T, open func(t testing.TB) Pair) {
	tests := []struct {
		name string
		f    func(t *testing.T, p Pair)
	}{
		{"CreateRead", testCreateRead},
		{"CreateTaken", testCreateTaken},
		{"UnknownOperation", testUnknown},
		{"UpdateSeesTail", testUpdateSeesTail},
		{"UpdateErrorAppendsNothing", testUpdateError},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Snapshot", testSnapshot},
		{"Archive", testArchive},
		{"Logs", testLogs},
		{"Watch", testWatch},
		{"WatchFromReturn", testWatchFromReturn},
		{"WatchLoud", testWatchLoud},
		{"Leases", testLeases},
		{"Beats", testBeats},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := open(t)
			t.Cleanup(func() {
				p.A.Close()
				if p.B != p.A {
					p.B.Close()
				}
			})
			tc.f(t, p)
		})
	}
}

var ctx = context.Background()

// rec returns a record whose body says n and whose log line says msg.
func rec(n int, msg string) journal.Record {
	r := journal.Record{Time: time.Now(), Body: []byte(fmt.Sprintf(`{"n":%d}`, n))}
	if msg != "" {
		r.Log = []journal.LogLine{{Level: "INFO", Participant: "p1", Message: msg}}
	}
	return r
}

func id(t testing.TB) string {
	return "20261201T00:00:00.000-" + strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
}

func appendOne(t testing.TB, s journal.Store, opID string, after journal.Rev, r journal.Record) journal.Tail {
	t.Helper()
	tail, err := s.Update(ctx, opID, after, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{r}}, nil
	})
	require.NoError(t, err)
	return tail
}

func bodies(recs []journal.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Body))
	}
	return out
}

func testCreateRead(t *testing.T, p Pair) {
	op := id(t)
	tail, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "created"), rec(2, "")}})
	require.NoError(t, err)
	require.Len(t, tail.Records, 2)
	assert.Equal(t, journal.Rev(1), tail.Records[0].Rev)
	assert.Equal(t, journal.Rev(2), tail.Records[1].Rev)

	got, err := p.B.Read(ctx, op, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{`{"n":1}`, `{"n":2}`}, bodies(got.Records))
	assert.False(t, got.Archived)
	assert.Equal(t, journal.Rev(2), got.End(0))
	assert.WithinDuration(t, tail.Records[0].Time, got.Records[0].Time, time.Millisecond)

	got, err = p.B.Read(ctx, op, 1)
	require.NoError(t, err)
	assert.Equal(t, []string{`{"n":2}`}, bodies(got.Records))
	got, err = p.B.Read(ctx, op, 2)
	require.NoError(t, err)
	assert.Empty(t, got.Records)

	ids, err := p.B.List(ctx, false)
	require.NoError(t, err)
	assert.Contains(t, ids, op)
}

func testCreateTaken(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	_, err = p.B.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.ErrorIs(t, err, journal.ErrExists)
	got, err := p.A.Read(ctx, op, 0)
	require.NoError(t, err)
	assert.Len(t, got.Records, 1, "a refused Create changes nothing")
}

func testUnknown(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Read(ctx, op, 0)
	require.ErrorIs(t, err, journal.ErrNotFound)
	_, err = p.A.Update(ctx, op, 0, func(journal.Tail) (journal.Change, error) {
		assert.Fail(t, "fn called for an unknown operation")
		return journal.Change{}, nil
	})
	require.ErrorIs(t, err, journal.ErrNotFound)
	_, err = p.A.ReadLog(ctx, op, false)
	require.ErrorIs(t, err, journal.ErrNotFound)
	ids, err := p.A.List(ctx, false)
	require.NoError(t, err)
	assert.NotContains(t, ids, op)
}

func testUpdateSeesTail(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	appendOne(t, p.B, op, 1, rec(2, ""))
	appendOne(t, p.B, op, 2, rec(3, ""))

	// A is at 1: its function sees 2 and 3, and its record lands after.
	var seen []string
	tail, err := p.A.Update(ctx, op, 1, func(tl journal.Tail) (journal.Change, error) {
		seen = bodies(tl.Records)
		return journal.Change{Records: []journal.Record{rec(4, "")}}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{`{"n":2}`, `{"n":3}`}, seen)
	assert.Equal(t, []string{`{"n":2}`, `{"n":3}`, `{"n":4}`}, bodies(tail.Records))
	assert.Equal(t, journal.Rev(4), tail.End(1))

	// The zero Change appends nothing.
	tail, err = p.B.Update(ctx, op, 4, func(journal.Tail) (journal.Change, error) { return journal.Change{}, nil })
	require.NoError(t, err)
	assert.Empty(t, tail.Records)
	got, err := p.A.Read(ctx, op, 0)
	require.NoError(t, err)
	assert.Len(t, got.Records, 4)
}

func testUpdateError(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	boom := errors.New("boom")
	_, err = p.A.Update(ctx, op, 1, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{rec(2, "")}}, boom
	})
	require.ErrorIs(t, err, boom)
	got, err := p.B.Read(ctx, op, 0)
	require.NoError(t, err)
	assert.Len(t, got.Records, 1)
}

// testConcurrentUpdates has writers on both stores each append records
// that name the position they saw: every record must follow the one it
// saw, with no position lost or doubled.
func testConcurrentUpdates(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(0, "")}})
	require.NoError(t, err)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		s := p.A
		if w%2 == 1 {
			s = p.B
		}
		wg.Go(func() {
			pos := journal.Rev(1)
			for range each {
				tail, err := s.Update(ctx, op, pos, func(tl journal.Tail) (journal.Change, error) {
					seen := tl.End(pos)
					return journal.Change{Records: []journal.Record{{Body: []byte(fmt.Sprintf(`{"n":%d}`, seen+1))}}}, nil
				})
				if err != nil {
					errs <- err
					return
				}
				pos = tail.End(pos)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := p.A.Read(ctx, op, 0)
	require.NoError(t, err)
	require.Len(t, got.Records, 1+writers*each)
	for i, r := range got.Records {
		assert.Equal(t, journal.Rev(i+1), r.Rev)
		if i > 0 {
			assert.Equal(t, fmt.Sprintf(`{"n":%d}`, i+1), string(r.Body), "record %d was decided on a stale tail", i+1)
		}
	}
}

func testSnapshot(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "one")}})
	require.NoError(t, err)
	appendOne(t, p.A, op, 1, rec(2, "two"))
	_, err = p.A.Update(ctx, op, 2, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{rec(3, "three")}, Snapshot: []byte(`{"state":3}`)}, nil
	})
	require.NoError(t, err)
	appendOne(t, p.B, op, 3, rec(4, "four"))

	// A reader that saw nothing starts from the snapshot, unless the
	// store still has every record.
	got, err := p.B.Read(ctx, op, 0)
	require.NoError(t, err)
	if got.Snapshot != nil {
		assert.JSONEq(t, `{"state":3}`, string(got.Snapshot))
		assert.Equal(t, journal.Rev(3), got.Base)
		assert.Equal(t, []string{`{"n":4}`}, bodies(got.Records))
	} else {
		assert.Len(t, got.Records, 4)
	}
	assert.Equal(t, journal.Rev(4), got.End(0))

	// A reader at the head or past the snapshot reads records only.
	got, err = p.B.Read(ctx, op, 3)
	require.NoError(t, err)
	assert.Nil(t, got.Snapshot)
	assert.Equal(t, []string{`{"n":4}`}, bodies(got.Records))

	// A writer behind the snapshot sees it too, and lands after the head.
	var sawSnapshot bool
	tail, err := p.A.Update(ctx, op, 1, func(tl journal.Tail) (journal.Change, error) {
		sawSnapshot = tl.Snapshot != nil
		return journal.Change{Records: []journal.Record{rec(5, "")}}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, journal.Rev(5), tail.End(1))
	_ = sawSnapshot

	// Snapshots never drop log lines.
	log, err := p.B.ReadLog(ctx, op, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"one", "two", "three", "four"}, messages(t, log))
}

func testArchive(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "created")}})
	require.NoError(t, err)
	tail, err := p.B.Update(ctx, op, 1, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{rec(2, "done")}, Snapshot: []byte(`{"final":true}`), Archive: true}, nil
	})
	require.NoError(t, err)
	assert.True(t, tail.Archived)

	_, err = p.A.Update(ctx, op, 2, func(journal.Tail) (journal.Change, error) {
		assert.Fail(t, "fn called on an archived operation")
		return journal.Change{}, nil
	})
	require.ErrorIs(t, err, journal.ErrArchived)
	_, err = p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.ErrorIs(t, err, journal.ErrExists)

	got, err := p.A.Read(ctx, op, 0)
	require.NoError(t, err)
	assert.True(t, got.Archived)
	assert.Equal(t, journal.Rev(2), got.End(0))
	got, err = p.A.Read(ctx, op, 2)
	require.NoError(t, err)
	assert.True(t, got.Archived)
	assert.Empty(t, got.Records)

	live, err := p.A.List(ctx, false)
	require.NoError(t, err)
	assert.NotContains(t, live, op)
	archived, err := p.A.List(ctx, true)
	require.NoError(t, err)
	assert.Contains(t, archived, op)

	log, err := p.A.ReadLog(ctx, op, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"created", "done"}, messages(t, log))
}

func testLogs(t *testing.T, p Pair) {
	op := id(t)
	r := rec(1, "info line")
	r.Log = append(r.Log, journal.LogLine{Level: "DEBUG", Participant: "p1", Message: "debug\nline"})
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{r}})
	require.NoError(t, err)
	appendOne(t, p.B, op, 1, journal.Record{Log: []journal.LogLine{{Level: "ERROR", Participant: "p2", Message: "bad"}}, Body: []byte(`{}`)})

	info, err := p.A.ReadLog(ctx, op, false)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(info), "\n"), "\n")
	require.Len(t, lines, 2)
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[INFO\] p1 info line$`, lines[0])
	assert.Regexp(t, `\[ERROR\] p2 bad$`, lines[1])
	debug, err := p.A.ReadLog(ctx, op, true)
	require.NoError(t, err)
	assert.Regexp(t, `\[DEBUG\] p1 debug\\nline\n$`, string(debug), "a message stays on one line")
}

// messages returns the messages of a log, in order.
func messages(t testing.TB, log []byte) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(log), "\n"), "\n") {
		f := strings.SplitN(l, " ", 4)
		require.Len(t, f, 4, "log line %q", l)
		out = append(out, f[3])
	}
	return out
}

func testWatch(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	ch, err := p.A.Watch(wctx, op)
	require.NoError(t, err)
	drain(ch)

	appendOne(t, p.B, op, 1, rec(2, ""))
	waitWake(t, ch, "a wake-up after another store's append")
	got, err := p.A.Read(ctx, op, 1)
	require.NoError(t, err)
	assert.Len(t, got.Records, 1)

	drain(ch)
	_, err = p.B.Update(ctx, op, 2, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{rec(3, "")}, Snapshot: []byte(`{}`), Archive: true}, nil
	})
	require.NoError(t, err)
	waitWake(t, ch, "a wake-up after the archive")

	cancel()
	waitClosed(t, ch)
}

// testWatchLoud checks a QuietWatcher: its WatchLoud channel wakes after
// a change that is not Quiet and after an archive, while a Watch channel
// also wakes after a Quiet one; a store without it is not checked.
func testWatchLoud(t *testing.T, p Pair) {
	qa, ok := p.A.(journal.QuietWatcher)
	if !ok {
		return
	}
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	loud, err := qa.WatchLoud(wctx, op)
	require.NoError(t, err)
	all, err := p.A.Watch(wctx, op)
	require.NoError(t, err)
	drain(loud)
	drain(all)

	_, err = p.B.Update(ctx, op, 1, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{rec(2, "")}, Quiet: true}, nil
	})
	require.NoError(t, err)
	waitWake(t, all, "Watch wake-up after a quiet change")
	appendOne(t, p.B, op, 2, rec(3, ""))
	waitWake(t, loud, "WatchLoud wake-up after a loud change")
	got, err := p.A.Read(ctx, op, 1)
	require.NoError(t, err)
	assert.Equal(t, []string{`{"n":2}`, `{"n":3}`}, bodies(got.Records), "the quiet record is in the journal all the same")

	drain(loud)
	_, err = p.B.Update(ctx, op, 3, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{rec(4, "")}, Snapshot: []byte(`{}`), Archive: true}, nil
	})
	require.NoError(t, err)
	waitWake(t, loud, "WatchLoud wake-up after the archive")

	cancel()
	waitClosed(t, loud)
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// waitClosed waits for a watch channel whose context ended to close.
func waitClosed(t testing.TB, ch <-chan struct{}) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	}, 5*time.Second, time.Millisecond, "the channel closes when its context ends")
}

// testWatchFromReturn: a change made by another store as soon as Watch
// has returned wakes the channel, however late the store's own watch gets
// going; tried many times, as a store that starts watching in the
// background misses such a change only now and then.
func testWatchFromReturn(t *testing.T, p Pair) {
	op := id(t)
	tail, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	after := tail.End(0)
	for i := range 30 {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := p.A.Watch(wctx, op)
		require.NoError(t, err)
		after = appendOne(t, p.B, op, after, rec(i+2, "")).End(after)
		waitWake(t, ch, fmt.Sprintf("wake-up for append %d, made right after Watch returned", i+1))
		cancel()
	}
}

func waitWake(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		require.Failf(t, "timed out", "no %s", what)
	}
}

func testLeases(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	m := journal.Member{ID: "p1", PID: 4242, Host: p.Host, TTL: time.Minute}
	l, err := p.A.Hold(ctx, op, m)
	require.NoError(t, err)

	gone, err := p.B.Observe(ctx, op, m)
	require.NoError(t, err)
	select {
	case <-gone:
		require.Fail(t, "the lease of a live member ended")
	case <-time.After(50 * time.Millisecond):
	}
	vs, err := p.B.Vitals(ctx, op)
	require.NoError(t, err)
	v := findVital(vs, m)
	require.NotNil(t, v, "vitals %+v", vs)
	assert.True(t, v.Held)
	before := v.Beat
	require.Eventually(t, func() bool {
		require.NoError(t, l.Beat(ctx))
		vs, err := p.B.Vitals(ctx, op)
		require.NoError(t, err)
		v := findVital(vs, m)
		return v != nil && v.Beat.After(before)
	}, 5*time.Second, 5*time.Millisecond, "a beat moves the member's beat time")

	require.NoError(t, l.Release())
	waitWake(t, gone, "end of the lease after Release")

	// A member that holds no lease is gone at once.
	gone, err = p.B.Observe(ctx, op, journal.Member{ID: "p2", PID: 1, Host: p.Host, TTL: time.Minute})
	require.NoError(t, err)
	waitWake(t, gone, "end of a lease never held")
}

func findVital(vs []journal.Vital, m journal.Member) *journal.Vital {
	for i := range vs {
		if vs[i].ID == m.ID && vs[i].PID == m.PID {
			return &vs[i]
		}
	}
	return nil
}

func testBeats(t *testing.T, p Pair) {
	op := id(t)
	_, err := p.A.Create(ctx, op, journal.Change{Records: []journal.Record{rec(1, "")}})
	require.NoError(t, err)
	m := journal.Member{ID: "remote1", PID: 77, Host: "elsewhere.example", TTL: time.Minute}
	require.NoError(t, p.A.Beat(ctx, op, m))
	vs, err := p.B.Vitals(ctx, op)
	require.NoError(t, err)
	v := findVital(vs, m)
	require.NotNil(t, v, "vitals %+v", vs)
	assert.Equal(t, "elsewhere.example", v.Host)
	first := v.Beat
	require.Eventually(t, func() bool {
		require.NoError(t, p.A.Beat(ctx, op, m))
		vs, err := p.B.Vitals(ctx, op)
		require.NoError(t, err)
		v := findVital(vs, m)
		return v != nil && v.Beat.After(first)
	}, 5*time.Second, 5*time.Millisecond, "a beat moves the member's beat time")

	err = p.A.Beat(ctx, "20261201T00:00:00.000-nobody-00000000", m)
	require.ErrorIs(t, err, journal.ErrNotFound)
}
