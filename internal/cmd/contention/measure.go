package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/internal/store"
)

// config is one measurement.
type config struct {
	ps        []int         // numbers of worker processes
	d         time.Duration // how long the workers run calls
	rounds    int           // how many times every P is measured
	contained bool          // CallOptions.Contained
	heartbeat time.Duration // Options.HeartbeatInterval; 0: default
	stale     time.Duration // Options.StaleThreshold; 0: default
	parent    string        // where to make the directories; "": temp
	exe       string        // the program that runs workers: this one
	progress  io.Writer     // progress lines, or nil
}

// row is the outcome for one P.
type row struct {
	P             int
	Calls         int            // round trips within the window, all workers
	Rate          float64        // Calls per second
	P50, P99      time.Duration  // of one round trip
	Verdicts      int            // participants declared crashed
	FailedWorkers int            // workers whose operation failed
	HB            map[string]int // heartbeat errors by type, all participants
	Errors        int            // errors of StartCall, End and Close
	Details       []string       // the first errors, the failure
}

func (r row) hbString() string {
	if len(r.HB) == 0 {
		return "0"
	}
	var parts []string
	for k, v := range r.HB {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// worker is a running worker process. Its stderr is written by exec's
// copying goroutine and read only after Wait.
type worker struct {
	id     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr strings.Builder
}

// measure runs P workers on one operation for cfg.d.
func measure(cfg config, p int) (row, error) {
	dir, err := os.MkdirTemp(cfg.parent, "contention-")
	if err != nil {
		return row{}, err
	}
	defer os.RemoveAll(dir)
	hb := &hbCounter{n: make(map[string]int)}
	sup, err := ledger.NewLocalLedger(ledger.Options{
		BasePath: dir, ParticipantID: "supervisor", NoSignalHandler: true,
		HeartbeatInterval: cfg.heartbeat, StaleThreshold: cfg.stale,
		Callback: ledger.LedgerCallback{OnGlobalHeartbeatError: hb.add},
	})
	if err != nil {
		return row{}, err
	}
	defer sup.Close()
	op, err := sup.CreateOperation(context.Background(), ledger.CreateOptions{Description: "contention"})
	if err != nil {
		return row{}, err
	}
	ws, err := startWorkers(cfg, dir, op.ID(), p)
	if err != nil {
		return row{}, err
	}
	start := time.Now().UTC()
	if cfg.progress != nil {
		fmt.Fprintf(cfg.progress, "contention: P=%d: %d workers joined, running for %v\n", p, p, cfg.d)
	}
	r := row{P: p, HB: make(map[string]int)}
	results := collect(ws, &r)
	r.add(results, cfg.d)
	r.verdicts(dir, op.ID())
	if r.Verdicts > 0 {
		const ms = "15:04:05.000"
		r.Details = append(r.Details, fmt.Sprintf("the calls ran from %s to %s UTC", start.Format(ms), start.Add(cfg.d).Format(ms)))
	}
	for k, v := range hb.snapshot() {
		r.HB[k] += v
	}
	return r, nil
}

// startWorkers starts p workers, waits until each has joined, then tells
// them all to go.
func startWorkers(cfg config, dir, op string, p int) ([]*worker, error) {
	var ws []*worker
	fail := func(err error) ([]*worker, error) {
		for _, w := range ws {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
		return nil, err
	}
	for i := range p {
		w, err := startWorker(cfg, workerConfig{Dir: dir, Op: op, ID: fmt.Sprintf("w%d", i), Duration: cfg.d,
			Contained: cfg.contained, Heartbeat: cfg.heartbeat, Stale: cfg.stale})
		if err != nil {
			return fail(err)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if line, err := w.stdout.ReadString('\n'); err != nil || line != "ready\n" {
			_, err := fail(fmt.Errorf("worker %s: %q %v", w.id, line, err))
			return nil, fmt.Errorf("%w: %s", err, w.stderr.String()) // after Wait
		}
	}
	for _, w := range ws {
		if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
			return fail(err)
		}
	}
	return ws, nil
}

func startWorker(cfg config, wc workerConfig) (*worker, error) {
	b, err := json.Marshal(wc)
	if err != nil {
		return nil, err
	}
	w := &worker{id: wc.ID, cmd: exec.Command(cfg.exe)}
	w.cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	w.cmd.Stderr = &w.stderr
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w.stdout = bufio.NewReader(out)
	return w, w.cmd.Start()
}

// collect reads every worker's result and reaps it. Workers that fail are
// counted as errors in r.
func collect(ws []*worker, r *row) []*workerResult {
	results := make([]*workerResult, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			res := new(workerResult)
			derr := json.NewDecoder(w.stdout).Decode(res)
			if err := w.cmd.Wait(); err != nil || derr != nil {
				res = &workerResult{NErrors: 1, Errors: []string{fmt.Sprintf("worker %s: %v %v: %s", w.id, err, derr, w.stderr.String())}}
			}
			results[i] = res
		})
	}
	wg.Wait()
	return results
}

// add sums up the workers' results.
func (r *row) add(results []*workerResult, d time.Duration) {
	var lat []time.Duration
	for _, res := range results {
		r.Calls += res.Calls
		for _, us := range res.Latencies {
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
		for k, v := range res.HBErrors {
			r.HB[k] += v
		}
		r.Errors += res.NErrors
		for _, e := range res.Errors {
			if len(r.Details) < maxErrors {
				r.Details = append(r.Details, e)
			}
		}
		if res.Failed != "" {
			r.FailedWorkers++
			if r.FailedWorkers == 1 {
				r.Details = append(r.Details, "operation failed: "+res.Failed)
			}
		}
	}
	r.Rate = float64(r.Calls) / d.Seconds()
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		r.P50, r.P99 = pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond)
	}
}

// verdicts counts the participants declared crashed in the operation's log
// and state, live or archived.
func (r *row) verdicts(dir, id string) {
	crashed := make(map[string]bool)
	log := readEither(filepath.Join(dir, id+".operation.log"), filepath.Join(dir, "backup", id, "operation.log"))
	for line := range strings.SplitSeq(string(log), "\n") {
		if _, rest, ok := strings.Cut(line, " CRASH_DETECTED "); ok {
			crashed[strings.Fields(rest)[0]] = true
			if len(crashed) <= maxErrors {
				r.Details = append(r.Details, "false verdict: "+line)
			}
		}
	}
	// The state as the journal has it (the document on disk is written
	// only at compactions).
	d := &ledger.Data{}
	if v, err := ledger.OpenViewer(ledger.Options{BasePath: dir}); err != nil {
		r.Details = append(r.Details, fmt.Sprintf("state: %v", err))
	} else {
		if d, err = v.State(context.Background(), id); err != nil {
			r.Details = append(r.Details, fmt.Sprintf("state: %v", err))
			d = &ledger.Data{}
		}
		v.Close()
	}
	for _, p := range d.Participants {
		if p.State == store.ParticipantCrashed {
			crashed[store.Key(p.ParticipantID, p.PID, p.Host)] = true
		}
	}
	r.Verdicts = len(crashed)
}

// readEither reads the first of the files that exists.
func readEither(paths ...string) []byte {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if !errors.Is(err, fs.ErrNotExist) {
			return b
		}
	}
	return nil
}
