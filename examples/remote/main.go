// Command remote shows the remote backend: an orchestrator and worker
// processes that share one operation through a ledger server over HTTP.
//
// It uses a ledger server that discovery finds on this host
// (LEDGER_SERVER_URL, or 127.0.0.1/localhost:19880, e.g. one started with
// `ledger serve --dir /tmp/ledger`); if there is none, it starts its own
// with ledger.NewServer on a free loopback port over a temporary
// directory. Then it creates an operation, starts worker processes (this
// program again) that join it by id, make calls and leave, completes the
// operation and prints its log.
//
//	go run ./examples/remote -workers 3 -calls 2
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tomdist/ledger"
)

// Environment of a worker process.
const (
	envOperation = "LEDGER_EXAMPLE_OPERATION" // set: this process is a worker
	envWorker    = "LEDGER_EXAMPLE_WORKER"
	envCalls     = "LEDGER_EXAMPLE_CALLS"
)

func main() {
	if os.Getenv(envOperation) != "" {
		if err := worker(context.Background(), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	workers := flag.Int("workers", 3, "worker processes")
	calls := flag.Int("calls", 2, "calls per worker")
	discover := flag.Bool("discover", true, "use a ledger server running on this host, if there is one")
	flag.Parse()
	if err := orchestrate(context.Background(), os.Stdout, *workers, *calls, *discover); err != nil {
		fmt.Fprintln(os.Stderr, "remote:", err)
		os.Exit(1)
	}
}

// orchestrate finds (if discover is set) or starts a server, runs the
// operation and prints what happened to w.
func orchestrate(ctx context.Context, w io.Writer, workers, calls int, discover bool) error {
	url, dir, stop, err := server(ctx, w, discover)
	if err != nil {
		return err
	}
	defer stop()

	boss, err := ledger.Connect(ctx, ledger.Options{ParticipantID: "orchestrator", ServerURL: url})
	if err != nil {
		return err
	}
	defer boss.Close()
	op, err := boss.CreateOperation(ctx, ledger.CreateOptions{Description: "remote example"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "orchestrator: created %s\n", op.ID())

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	var mu sync.Mutex // guards w for the worker output
	for i := range workers {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(),
			ledger.EnvServerURL+"="+url, envOperation+"="+op.ID(),
			envWorker+"="+strconv.Itoa(i+1), envCalls+"="+strconv.Itoa(calls))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				mu.Lock()
				fmt.Fprintln(w, sc.Text())
				mu.Unlock()
			}
			errs[i] = cmd.Wait()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("a worker failed: %w", err)
	}

	st, err := op.State(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "orchestrator: %d participants, %d frames open, aborted=%t\n", len(st.Participants), len(st.CallFrames), st.Aborted)
	if err := op.Complete(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "orchestrator: completed")
	if dir != "" {
		log, err := os.ReadFile(filepath.Join(dir, "backup", op.ID(), "operation.log"))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "--- operation log ---\n%s", log)
	}
	return nil
}

// server returns the URL of a ledger server: one that discovery finds on
// this host, or one started here over a temporary directory (then dir is
// that directory). stop shuts down what was started.
func server(ctx context.Context, w io.Writer, discover bool) (url, dir string, stop func(), err error) {
	if discover {
		probe, err := ledger.Connect(ctx, ledger.Options{
			ParticipantID: "probe",
			Discovery:     ledger.DiscoveryOptions{Timeout: 300 * time.Millisecond},
		})
		if err == nil {
			url = probe.(*ledger.RemoteClient).ServerURL()
			probe.Close()
			fmt.Fprintf(w, "using the ledger server at %s\n", url)
			return url, "", func() {}, nil
		}
		if !errors.Is(err, ledger.ErrNoServer) {
			return "", "", nil, err
		}
	}
	if dir, err = os.MkdirTemp("", "ledger-remote-example-"); err != nil {
		return "", "", nil, err
	}
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	url = "http://" + ln.Addr().String()
	fmt.Fprintf(w, "started a ledger server at %s\n", url)
	return url, dir, func() {
		cancel()
		<-done
		srv.Close()
		os.RemoveAll(dir)
	}, nil
}

// worker joins the operation named in its environment, makes its calls
// and leaves.
func worker(ctx context.Context, w io.Writer) error {
	name := "worker-" + os.Getenv(envWorker)
	calls, err := strconv.Atoi(os.Getenv(envCalls))
	if err != nil {
		return err
	}
	// ServerURL is empty: discovery takes LEDGER_SERVER_URL.
	l, err := ledger.Connect(ctx, ledger.Options{ParticipantID: name})
	if err != nil {
		return err
	}
	defer l.Close()
	op, err := l.JoinOperation(ctx, os.Getenv(envOperation), ledger.JoinOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s (pid %d): joined\n", name, os.Getpid())
	for i := range calls {
		call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: fmt.Sprintf("step %d", i+1)})
		if err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond) // the work
		if err := call.End(ctx, i); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: %s done\n", name, call.Description())
	}
	if err := op.Log(ctx, ledger.LogInfo, name+" finished"); err != nil {
		return err
	}
	return op.Leave(ctx, ledger.LeaveOptions{})
}
