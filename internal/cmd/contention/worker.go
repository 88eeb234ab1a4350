package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tomdist/ledger"
)

// workerEnv is the environment variable that makes the program a worker:
// it holds the worker's workerConfig as JSON.
const workerEnv = "CONTENTION_WORKER"

// workerConfig is what a worker process is told.
type workerConfig struct {
	Dir       string        // the ledger directory
	Op        string        // the operation to join
	ID        string        // the participant id
	Duration  time.Duration // how long to run calls after "go"
	Contained bool          // CallOptions.Contained
	Heartbeat time.Duration // Options.HeartbeatInterval; 0: default
	Stale     time.Duration // Options.StaleThreshold; 0: default
}

// workerResult is what a worker prints as JSON on standard output when
// it is done.
type workerResult struct {
	Calls     int            // round trips whose End returned within the window
	Latencies []int64        // every round trip (StartCall + End), in microseconds
	HBErrors  map[string]int // heartbeat errors by type
	Errors    []string       // errors of StartCall and End (the first few)
	NErrors   int            // all of them
	Failed    string         // the operation's failure, if it failed
}

// maxErrors bounds the errors a worker reports in full.
const maxErrors = 5

func workerFromEnv() (workerConfig, bool, error) {
	v, ok := os.LookupEnv(workerEnv)
	if !ok {
		return workerConfig{}, false, nil
	}
	var cfg workerConfig
	err := json.Unmarshal([]byte(v), &cfg)
	return cfg, true, err
}

// runWorker joins the operation, says "ready", waits for "go" on standard
// input, runs round trips for cfg.Duration, closes its ledger and prints
// its result. It returns the exit status.
func runWorker(cfg workerConfig) int {
	res, err := work(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "contention worker %s: %v\n", cfg.ID, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// hbCounter counts heartbeat errors by type.
type hbCounter struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

func (h *hbCounter) add(_ string, err *ledger.HeartbeatError) {
	h.mu.Lock()
	h.n[err.Type.String()]++
	h.mu.Unlock()
}

func (h *hbCounter) snapshot() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]int, len(h.n))
	for k, v := range h.n {
		m[k] = v
	}
	return m
}

func work(cfg workerConfig) (*workerResult, error) {
	hb := &hbCounter{n: make(map[string]int)}
	l, err := ledger.NewLocalLedger(ledger.Options{
		BasePath: cfg.Dir, ParticipantID: cfg.ID, NoSignalHandler: true,
		HeartbeatInterval: cfg.Heartbeat, StaleThreshold: cfg.Stale,
		Callback: ledger.LedgerCallback{OnGlobalHeartbeatError: hb.add},
	})
	if err != nil {
		return nil, err
	}
	op, err := l.JoinOperation(context.Background(), cfg.Op, ledger.JoinOptions{})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("join: %w", err)
	}
	fmt.Println("ready")
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil || line != "go\n" {
		l.Close()
		return nil, fmt.Errorf("waiting for go: %q %v", line, err)
	}
	res := &workerResult{}
	roundTrips(op, cfg, res)
	if info, failed := op.Failure(); failed {
		res.Failed = info.Reason
	}
	if err := l.Close(); err != nil {
		res.error(fmt.Errorf("close: %w", err))
	}
	res.HBErrors = hb.snapshot()
	return res, nil
}

func (r *workerResult) error(err error) {
	r.NErrors++
	if len(r.Errors) < maxErrors {
		r.Errors = append(r.Errors, err.Error())
	}
}

// roundTrips runs StartCall + End until the window closes. A StartCall
// still waiting for the lock then gives up; an End in progress is
// finished, retried after a lock timeout, so that no frame is left.
func roundTrips(op *ledger.Operation, cfg workerConfig, res *workerResult) {
	deadline := time.Now().Add(cfg.Duration)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for ctx.Err() == nil {
		start := time.Now()
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Contained: cfg.Contained})
		if err != nil {
			if ctx.Err() == nil {
				res.error(fmt.Errorf("StartCall: %w", err))
				pause(ctx, op)
			}
			continue
		}
		if err := end(call); err != nil {
			res.error(err)
			pause(ctx, op)
			continue
		}
		d := time.Since(start)
		res.Latencies = append(res.Latencies, d.Microseconds())
		if time.Now().Before(deadline) {
			res.Calls++
		}
	}
}

// end ends the call, retrying lock timeouts a few times.
func end(call *ledger.Call[int]) error {
	var err error
	for range 3 {
		if err = call.End(context.Background(), 0); !errors.Is(err, ledger.ErrLockTimeout) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("End: %w", err)
	}
	return nil
}

// pause keeps a worker whose operation failed from spinning on errors.
func pause(ctx context.Context, op *ledger.Operation) {
	if _, failed := op.Failure(); failed {
		<-ctx.Done()
	}
}
