package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tomdist/ledger"
)

// config is one campaign.
type config struct {
	kills     int           // SIGKILLs to deliver
	workers   int           // worker processes at any time
	life      time.Duration // mean time from a worker's start to its kill
	check     time.Duration // period of the file checks during the run
	remote    bool          // workers go through a `ledger serve` process
	ledgerBin string        // the ledger command for remote; empty: go build it
	fsync     bool          // workers fsync their journals
	heartbeat time.Duration // Options.HeartbeatInterval of everyone; 0: default
	stale     time.Duration // Options.StaleThreshold of everyone; 0: default
	detect    time.Duration // how long verdicts may take after the last kill
	parent    string        // where the campaign's directory is made; "": temp
	exe       string        // the program that runs workers: this one
	progress  io.Writer     // progress lines
}

// maxWorkerFailures ends a campaign whose workers keep failing on their own.
const maxWorkerFailures = 10

// campaign is one run: a supervisor that created the operation and stays
// in it (its monitor is one of the observers that detect the kills), the
// worker slots, and the checks.
type campaign struct {
	cfg      config
	base     string // the campaign's directory
	dir      string // the ledger directory: base/ledger
	journals string // the journals: base/journals
	lg       *ledger.LocalLedger
	op       *ledger.Operation
	server   *exec.Cmd // the ledger server, remote only
	url      string    // its URL

	claimed atomic.Int64 // kills claimed by the slots
	gen     atomic.Int64 // worker processes started

	mu       sync.Mutex     // guards kills, failures, stopped, hbErrs
	hbErrs   map[string]int // heartbeat errors of the supervisor, by type
	kills    []kill
	failures []string // workers that ended on their own, not by a kill
	stopped  []string // workers stopped at the end, through standard input
}

// result is the outcome of a campaign.
type result struct {
	tally
	kills, calls, acked, corrupt, workerFail int
	took                                     time.Duration
	notes                                    []string // facts that are no violation
	dir                                      string   // the campaign's directory
}

func (r *result) failed() bool {
	return r.lost+r.doubled+r.undetected+r.falseCrash+r.inconsistent+r.corrupt+r.workerFail+r.gaps > 0
}

// verdict is the one line that sums up the campaign.
func (r *result) verdict() string {
	v := "PASS"
	if r.failed() {
		v = "FAIL"
	}
	return fmt.Sprintf("crashtest: %s kills=%d calls=%d acked=%d lost=%d doubled=%d undetected=%d falsecrash=%d inconsistent=%d corrupt=%d workerfail=%d loggaps=%d in %v",
		v, r.kills, r.calls, r.acked, r.lost, r.doubled, r.undetected, r.falseCrash, r.inconsistent, r.corrupt, r.workerFail, r.gaps, r.took.Round(time.Second))
}

// run runs a campaign. An error means it could not be run at all.
func run(cfg config) (*result, error) {
	c, err := newCampaign(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	fc := newFileChecker(c.dir)
	c.slots(fc)
	res := &result{dir: c.base}
	c.awaitVerdicts()
	res.notes = append(res.notes, c.finish()...)
	fc.scan(true)
	c.verify(res, fc)
	res.took = time.Since(start)
	return res, nil
}

func newCampaign(cfg config) (*campaign, error) {
	base, err := os.MkdirTemp(cfg.parent, "crashtest-")
	if err != nil {
		return nil, err
	}
	c := &campaign{cfg: cfg, base: base, dir: filepath.Join(base, "ledger"), journals: filepath.Join(base, "journals"),
		hbErrs: make(map[string]int)}
	if err := c.open(); err != nil {
		c.stopServer()
		os.RemoveAll(base)
		return nil, err
	}
	return c, nil
}

// open starts the server (remote only) and the supervisor's operation.
func (c *campaign) open() error {
	if err := os.Mkdir(c.journals, 0o755); err != nil {
		return err
	}
	if c.cfg.remote {
		if err := c.startServer(); err != nil {
			return err
		}
	}
	lg, err := ledger.NewLocalLedger(ledger.Options{
		BasePath: c.dir, ParticipantID: "supervisor", NoSignalHandler: true,
		HeartbeatInterval: c.cfg.heartbeat, StaleThreshold: c.cfg.stale,
		Callback: ledger.LedgerCallback{OnGlobalHeartbeatError: c.heartbeatError},
	})
	if err != nil {
		return err
	}
	if c.op, err = lg.CreateOperation(context.Background(), ledger.CreateOptions{Description: "crashtest"}); err != nil {
		lg.Close()
		return err
	}
	c.lg = lg
	return nil
}

// slots runs the worker slots until the kills are done, checking the files
// every cfg.check meanwhile.
func (c *campaign) slots(fc *fileChecker) {
	done := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		t := time.NewTicker(c.cfg.check)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fc.scan(false)
			}
		}
	}()
	var wg sync.WaitGroup
	for n := range c.cfg.workers {
		wg.Go(func() { c.slot(n) })
	}
	wg.Wait()
	close(done)
	<-checked
}

// slot starts a worker, kills it at a random moment of its life, and
// starts the next, until the campaign has its kills; its last worker is
// stopped through its standard input.
func (c *campaign) slot(n int) {
	for c.workerFailures() < maxWorkerFailures {
		p, err := c.spawn(n)
		if err != nil {
			c.failed("start worker: %v", err)
			return
		}
		k := c.claimed.Add(1)
		if k > int64(c.cfg.kills) {
			c.stop(p)
			return
		}
		time.Sleep(time.Millisecond + rand.N(2*c.cfg.life))
		if !c.kill(p) {
			c.claimed.Add(-1)
		} else if k%100 == 0 && c.cfg.progress != nil {
			fmt.Fprintf(c.cfg.progress, "crashtest: %d/%d kills\n", k, c.cfg.kills)
		}
	}
}

// proc is a running worker.
type proc struct {
	id     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr tail
}

// tail keeps the end of what a worker writes to standard error. The
// goroutine of exec that copies the output writes it; it is read after Wait,
// which waits for that goroutine, so it needs no mutex.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (c *campaign) spawn(slot int) (*proc, error) {
	id := fmt.Sprintf("w%d-%d", slot, c.gen.Add(1))
	wc := workerConfig{Dir: c.dir, Op: c.op.ID(), ID: id, Journal: filepath.Join(c.journals, id+".journal"),
		Heartbeat: c.cfg.heartbeat, Stale: c.cfg.stale, Fsync: c.cfg.fsync}
	if c.cfg.remote {
		wc.Dir, wc.ServerURL = "", c.url
	}
	b, err := json.Marshal(wc)
	if err != nil {
		return nil, err
	}
	p := &proc{id: id, cmd: exec.Command(c.cfg.exe)}
	p.cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	return p, p.cmd.Start()
}

// kill sends SIGKILL and reaps the worker. It returns false, and records a
// failure, if the worker had ended on its own.
func (c *campaign) kill(p *proc) bool {
	at := time.Now()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		c.failed("worker %s ended on its own (%v): %s", p.id, p.cmd.ProcessState, p.stderr.b)
		return false
	}
	c.mu.Lock()
	c.kills = append(c.kills, kill{id: p.id, pid: p.cmd.Process.Pid, at: at})
	c.mu.Unlock()
	return true
}

// stop closes the worker's standard input: it finishes its call, closes
// its ledger and exits.
func (c *campaign) stop(p *proc) {
	p.stdin.Close()
	t := time.AfterFunc(time.Minute, func() { p.cmd.Process.Kill() })
	err := p.cmd.Wait()
	t.Stop()
	if err != nil {
		c.failed("worker %s did not stop cleanly (%v): %s", p.id, err, p.stderr.b)
		return
	}
	c.mu.Lock()
	c.stopped = append(c.stopped, p.id)
	c.mu.Unlock()
}

func (c *campaign) failed(format string, args ...any) {
	c.mu.Lock()
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

func (c *campaign) workerFailures() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.failures)
}

// awaitVerdicts waits, at most cfg.detect, until no killed worker is still
// an active participant.
func (c *campaign) awaitVerdicts() {
	deadline := time.Now().Add(c.cfg.detect)
	for time.Now().Before(deadline) {
		// The state as the journal has it: the state document on disk is
		// written only at compactions and would not show the verdicts.
		d, err := c.op.State(context.Background())
		if err == nil && c.pending(d) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pending counts the killed workers that are still active in d.
func (c *campaign) pending(d *ledger.Data) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.kills {
		for _, p := range d.Participants {
			if p.ParticipantID == k.id && p.PID == k.pid && p.State == ledger.ParticipantActive {
				n++
			}
		}
	}
	return n
}

// finish completes the operation (which archives it), closes the
// supervisor and stops the server. It returns what went wrong as notes:
// the checks that follow say whether it matters.
func (c *campaign) finish() []string {
	var notes []string
	if ents, err := os.ReadDir(filepath.Join(c.dir, c.op.ID()+".live")); err == nil {
		notes = append(notes, fmt.Sprintf("liveness files before the archive: %d", len(ents)))
	}
	if err := c.op.Complete(context.Background()); err != nil {
		notes = append(notes, fmt.Sprintf("supervisor: Complete: %v", err))
	}
	if err := c.lg.Close(); err != nil {
		notes = append(notes, fmt.Sprintf("supervisor: Close: %v", err))
	}
	c.stopServer()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hbErrs) > 0 {
		notes = append(notes, fmt.Sprintf("supervisor: heartbeat errors %v", c.hbErrs))
	}
	return notes
}

func (c *campaign) heartbeatError(_ string, err *ledger.HeartbeatError) {
	c.mu.Lock()
	c.hbErrs[err.Type.String()]++
	c.mu.Unlock()
}

// startServer starts `ledger serve` on a free loopback port.
func (c *campaign) startServer() error {
	bin := c.cfg.ledgerBin
	if bin == "" {
		bin = filepath.Join(c.base, "ledger-bin")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/tomdist/ledger/cmd/ledger").CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build ./cmd/ledger: %v: %s", err, out)
		}
	}
	c.server = exec.Command(bin, "serve", "--dir", c.dir, "--addr", "127.0.0.1:0")
	logf, err := os.Create(filepath.Join(c.base, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close() // the server has its own descriptor
	c.server.Stderr = logf
	out, err := c.server.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.server.Start(); err != nil {
		return err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		c.stopServer()
		return fmt.Errorf("ledger serve said %q: %v", line, err)
	}
	go io.Copy(io.Discard, out)
	c.url = url
	return nil
}

func (c *campaign) stopServer() {
	if c.server == nil || c.server.Process == nil {
		return
	}
	c.server.Process.Signal(syscall.SIGTERM)
	c.server.Wait()
	c.server = nil
}

// verify reads the archived operation and the journals and fills res.
func (c *campaign) verify(res *result, fc *fileChecker) {
	res.corrupt = len(fc.problems)
	res.details = append(res.details, fc.problems...)
	res.workerFail = len(c.failures)
	res.details = append(res.details, c.failures...)
	res.kills = len(c.kills)
	backup := filepath.Join(c.dir, "backup", c.op.ID())
	final, err := readState(filepath.Join(backup, "operation.json"), c.op.ID())
	if err == nil && final == nil {
		err = errors.New("the operation was not archived")
	}
	if err != nil {
		res.note(&res.corrupt, "final state: %v", err)
		return
	}
	ev, err := parseLog(filepath.Join(backup, "operation.log"))
	if err != nil {
		res.note(&res.corrupt, "log: %v", err)
		return
	}
	calls, err := readJournals(c.journals)
	if err != nil {
		res.note(&res.inconsistent, "journals: %v", err)
		return
	}
	res.calls, res.acked = len(calls.started), len(calls.acked)
	lat, unjoined, killed := res.checkDetection(c.kills, ev, final)
	res.checkCalls(calls, ev, final, killed)
	res.checkStopped(c.stopped, final)
	res.notes = append(res.notes,
		fmt.Sprintf("kill -> CRASH_DETECTED: %s; killed before joining: %d", summary(lat), unjoined),
		fmt.Sprintf("temp files left by killed writers: %d; participant records: %d", fc.temps, len(final.Participants)))
}
