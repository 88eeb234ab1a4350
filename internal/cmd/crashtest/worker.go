package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tomdist/ledger"
)

// workerEnv is the environment variable that makes the program a worker:
// it holds the worker's workerConfig as JSON.
const workerEnv = "CRASHTEST_WORKER"

// workerConfig is what a worker process is told by the campaign.
type workerConfig struct {
	Dir       string        // the ledger directory (local workers)
	ServerURL string        // the ledger server (remote workers)
	Op        string        // the operation to join
	ID        string        // the participant id, unique to this process
	Journal   string        // the journal file of this process
	Heartbeat time.Duration // Options.HeartbeatInterval
	Stale     time.Duration // Options.StaleThreshold
	Fsync     bool          // fsync the journal after every record
}

// workerFromEnv returns the worker configuration if this process is a
// worker.
func workerFromEnv() (workerConfig, bool, error) {
	v, ok := os.LookupEnv(workerEnv)
	if !ok {
		return workerConfig{}, false, nil
	}
	var cfg workerConfig
	err := json.Unmarshal([]byte(v), &cfg)
	return cfg, true, err
}

// Journal records, one line each, written before and after each ledger
// call, so that the campaign knows what a killed worker had done:
//
//	J pid          joined the operation
//	B token        about to call StartCall with Description token
//	S token callID StartCall returned nil; End is called next
//	A token        End returned nil: the call is acknowledged
//	C              Close returned nil
const (
	recJoined  = "J"
	recBegin   = "B"
	recStarted = "S"
	recAcked   = "A"
	recClosed  = "C"
)

// journal is a worker's record of its calls: one O_APPEND write per record,
// so a record survives the SIGKILL of its writer as soon as it is written.
type journal struct {
	f     *os.File
	fsync bool // also survive a crash of the machine
}

func openJournal(path string, fsync bool) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &journal{f: f, fsync: fsync}, nil
}

func (j *journal) rec(fields ...string) error {
	if _, err := j.f.WriteString(strings.Join(fields, " ") + "\n"); err != nil {
		return err
	}
	if j.fsync {
		return j.f.Sync()
	}
	return nil
}

// runWorker joins the operation and does StartCall/End in a loop until its
// standard input closes (the campaign's "stop"), then closes the ledger. It
// returns the exit status. The campaign kills most workers long before.
func runWorker(cfg workerConfig) int {
	if err := work(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "crashtest worker %s: %v\n", cfg.ID, err)
		return 1
	}
	return 0
}

func work(cfg workerConfig) error {
	j, err := openJournal(cfg.Journal, cfg.Fsync)
	if err != nil {
		return err
	}
	defer j.f.Close()
	ctx := context.Background()
	l, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	op, err := l.JoinOperation(ctx, cfg.Op, ledger.JoinOptions{})
	if err != nil {
		l.Close()
		return fmt.Errorf("join: %w", err)
	}
	if err := j.rec(recJoined, strconv.Itoa(os.Getpid())); err != nil {
		l.Close()
		return err
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	if err := loop(ctx, op, j, cfg.ID, stop); err != nil {
		l.Close()
		return err
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return j.rec(recClosed)
}

func connect(ctx context.Context, cfg workerConfig) (ledger.Ledger, error) {
	return ledger.Connect(ctx, ledger.Options{
		BasePath: cfg.Dir, ServerURL: cfg.ServerURL, ParticipantID: cfg.ID,
		HeartbeatInterval: cfg.Heartbeat, StaleThreshold: cfg.Stale, NoSignalHandler: true,
	})
}

// loop does one call after the other until stop is closed.
func loop(ctx context.Context, op *ledger.Operation, j *journal, id string, stop <-chan struct{}) error {
	for seq := 1; ; seq++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if err := oneCall(ctx, op, j, id+"-"+strconv.Itoa(seq), seq); err != nil {
			return err
		}
	}
}

// oneCall runs one contained call whose description is token, journalling
// before StartCall, between StartCall and End, and after End.
func oneCall(ctx context.Context, op *ledger.Operation, j *journal, token string, seq int) error {
	if err := j.rec(recBegin, token); err != nil {
		return err
	}
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: token, Contained: true})
	if err != nil {
		return fmt.Errorf("StartCall %s: %w", token, err)
	}
	if err := j.rec(recStarted, token, call.ID()); err != nil {
		return err
	}
	if err := call.End(ctx, seq); err != nil {
		return fmt.Errorf("End %s (%s): %w", token, call.ID(), err)
	}
	return j.rec(recAcked, token)
}
