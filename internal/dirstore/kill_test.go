package dirstore_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tomdist/ledger/internal/dirstore"
	"github.com/tomdist/ledger/journal"
)

// roles are what the test binary does when a test runs it as a child.
var roles = map[string]func(){
	"appender": appenderRole,
	"holder":   holderRole,
}

func TestMain(m *testing.M) {
	if r := os.Getenv("DIRSTORE_ROLE"); r != "" {
		roles[r]()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func child(t testing.TB, role string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "DIRSTORE_ROLE="+role), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

const killOp = "20261201T00:00:00.000-killed-00000001"

// appenderRole appends records to $DIR's operation as fast as it can,
// printing the position of each after Update returned, until killed.
func appenderRole() {
	d, err := dirstore.Open(os.Getenv("DIR"), dirstore.Options{Durable: os.Getenv("DURABLE") != ""})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	pos := journal.Rev(0)
	for i := 0; ; i++ {
		tail, err := d.Update(ctx, killOp, pos, func(journal.Tail) (journal.Change, error) {
			r := journal.Record{Body: []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", i%300))),
				Log: []journal.LogLine{{Level: "INFO", Participant: "w", Message: fmt.Sprintf("line %d", i)}}}
			c := journal.Change{Records: []journal.Record{r}}
			if i%50 == 49 {
				c.Snapshot = []byte(fmt.Sprintf(`{"upto":%d}`, i))
			}
			return c, nil
		})
		if err != nil {
			panic(err)
		}
		pos = tail.End(pos)
		fmt.Println(pos)
	}
}

// TestKilledAppenderLosesNothing kills an appender at random moments: every
// record it acknowledged is in the journal, in order, with its log line,
// and the journal takes records after the kill.
func TestKilledAppenderLosesNothing(t *testing.T) {
	const kills = 40
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	_, err := d.Create(context.Background(), killOp, journal.Change{Records: []journal.Record{{Body: []byte(`{"n":-1}`),
		Log: []journal.LogLine{{Level: "INFO", Participant: "w", Message: "created"}}}}})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	acked := journal.Rev(1)
	for k := range kills {
		cmd := child(t, "appender", "DIR="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		want := 1 + r.IntN(60)
		for n := 0; n < want && sc.Scan(); n++ {
		}
		time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond) // moves the kill to a random point
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			require.NoError(t, err)
			acked = max(acked, journal.Rev(n))
		}
		cmd.Wait()

		got, err := d.Read(context.Background(), killOp, 0)
		require.NoError(t, err, "kill %d", k)
		end := got.End(0)
		require.GreaterOrEqual(t, end, acked, "kill %d: acknowledged records lost", k)
		log, err := d.ReadLog(context.Background(), killOp, false)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSuffix(string(log), "\n"), "\n")
		require.Len(t, lines, int(end), "kill %d: one log line per record, none lost or doubled", k)
	}
	// The journal is whole: a writer that comes after appends, and the
	// log file on disk holds a line for every record with one.
	tail, err := d.Update(context.Background(), killOp, 0, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}}, nil
	})
	require.NoError(t, err)
	onDisk, err := os.ReadFile(filepath.Join(dir, killOp+".operation.log"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(onDisk), "\n"), "\n")
	assert.Len(t, lines, int(tail.End(0))-1, "the last record has no log line")
	for _, l := range lines[1:] {
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT[0-9:.]+Z \[INFO\] w line \d+$`, l)
	}
}

// holderRole holds a lease of member "held" on $OP in $DIR and says
// "held", then waits to be killed.
func holderRole() {
	d, err := dirstore.Open(os.Getenv("DIR"), dirstore.Options{})
	if err != nil {
		panic(err)
	}
	_, err = d.Hold(context.Background(), os.Getenv("OP"), journal.Member{ID: "held", PID: os.Getpid()})
	if err != nil {
		panic(err)
	}
	fmt.Println("held")
	select {}
}

// TestObserveSeesKill: the lease of a process killed with SIGKILL ends
// for its observers, and its vital shows it not held.
func TestObserveSeesKill(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	ctx := context.Background()
	_, err := d.Create(ctx, killOp, journal.Change{Records: []journal.Record{{Body: []byte(`{}`)}}})
	require.NoError(t, err)
	cmd := child(t, "holder", "DIR="+dir, "OP="+killOp)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	require.True(t, sc.Scan())
	require.Equal(t, "held", sc.Text())

	host, _ := os.Hostname()
	m := journal.Member{ID: "held", PID: cmd.Process.Pid, Host: host}
	gone, err := d.Observe(ctx, killOp, m)
	require.NoError(t, err)
	vs, err := d.Vitals(ctx, killOp)
	require.NoError(t, err)
	require.Len(t, vs, 1)
	assert.True(t, vs[0].Held)

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		require.Fail(t, "the lease of a killed process did not end")
	}
	vs, err = d.Vitals(ctx, killOp)
	require.NoError(t, err)
	require.Len(t, vs, 1)
	assert.False(t, vs[0].Held)

	// Another host's members cannot be observed here.
	_, err = d.Observe(ctx, killOp, journal.Member{ID: "held", PID: 1, Host: host + ".elsewhere"})
	require.ErrorIs(t, err, journal.ErrNotObservable)
}

// TestTornTailCut: a torn line at the end of a journal (a writer killed
// in its write) is ignored by readers and cut by the next writer.
func TestTornTailCut(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	ctx := context.Background()
	_, err := d.Create(ctx, killOp, journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}}})
	require.NoError(t, err)
	path := filepath.Join(dir, killOp+".operation.journal")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`0badc0de {"rev":2,"ti`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	other := open(t, dir, dirstore.Options{})
	defer other.Close()
	got, err := other.Read(ctx, killOp, 0)
	require.NoError(t, err)
	assert.Equal(t, journal.Rev(1), got.End(0))
	tail, err := other.Update(ctx, killOp, 1, func(journal.Tail) (journal.Change, error) {
		return journal.Change{Records: []journal.Record{{Body: []byte(`{"n":2}`)}}}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, journal.Rev(2), tail.End(1))
	got, err = d.Read(ctx, killOp, 0)
	require.NoError(t, err)
	require.Len(t, got.Records, 2)
	assert.JSONEq(t, `{"n":2}`, string(got.Records[1].Body))
}

// TestCorruptMiddleRefused: a record in the middle that fails its
// checksum is corruption, reported and left as it is.
func TestCorruptMiddleRefused(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, dirstore.Options{})
	defer d.Close()
	ctx := context.Background()
	_, err := d.Create(ctx, killOp, journal.Change{Records: []journal.Record{{Body: []byte(`{"n":1}`)}, {Body: []byte(`{"n":2}`)}}})
	require.NoError(t, err)
	path := filepath.Join(dir, killOp+".operation.journal")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := strings.Index(string(b), `{"n":1}`)
	require.Positive(t, i)
	b[i+5] = '7'
	require.NoError(t, os.WriteFile(path, b, 0o644))

	other := open(t, dir, dirstore.Options{})
	defer other.Close()
	_, err = other.Read(ctx, killOp, 0)
	require.ErrorIs(t, err, journal.ErrCorrupt)
	_, err = other.Update(ctx, killOp, 0, func(journal.Tail) (journal.Change, error) { return journal.Change{}, nil })
	require.ErrorIs(t, err, journal.ErrCorrupt)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, b, after, "a corrupt journal is left as it is")
}
