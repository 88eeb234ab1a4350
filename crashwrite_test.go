package ledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tomdist/ledger"
)

func init() { roles["fnd-writer"] = fWriterRole }

// fWriterRole creates an operation in $FND_DIR and changes it as fast as
// it can until it is killed, printing an acknowledgement after each change
// has returned: "op <id>", "start <call>", "end <call>", "temp <path>",
// "log <message>".
func fWriterRole() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "fnd-writer:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	l, err := ledger.Connect(ctx, ledger.Options{
		BasePath: os.Getenv("FND_DIR"), ParticipantID: "writer", NoSignalHandler: true,
		TempRoots: []string{"/nonexistent/fnd-writer"}, // the temp paths below are never created
	})
	if err != nil {
		fail(err)
	}
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "kill me"})
	if err != nil {
		fail(err)
	}
	fmt.Println("op", op.ID())
	var open []*ledger.Call[int]
	for i := range 10000 { // killed long before
		switch i % 4 {
		case 0, 1:
			c, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: fmt.Sprintf("call %d", i)})
			if err != nil {
				fail(err)
			}
			open = append(open, c)
			fmt.Println("start", c.ID())
		case 2:
			c := open[0]
			open = open[1:]
			if err := c.End(ctx, i); err != nil {
				fail(err)
			}
			fmt.Println("end", c.ID())
		case 3:
			if i%8 == 3 {
				path := fmt.Sprintf("/nonexistent/fnd-writer/%d", i)
				if err := op.RegisterTempResource(ctx, path); err != nil {
					fail(err)
				}
				fmt.Println("temp", path)
			} else {
				msg := fmt.Sprintf("line-%d", i)
				if err := op.Log(ctx, ledger.LogInfo, msg); err != nil {
					fail(err)
				}
				fmt.Println("log", msg)
			}
		}
	}
	fail(fmt.Errorf("not killed"))
}

// TestKilledWriterLeavesWholeState kills a writer process with SIGKILL at
// random moments, 200 times: the state file must always parse and hold
// every change the writer acknowledged before it died.
func TestKilledWriterLeavesWholeState(t *testing.T) {
	const kills, pipelines = 200, 2
	root := t.TempDir()
	var wg sync.WaitGroup
	for p := range pipelines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(p)))
			for i := range kills / pipelines {
				dir := filepath.Join(root, fmt.Sprintf("p%d-%03d", p, i))
				err := fKillWriter(t, dir, r)
				if !assert.NoErrorf(t, err, "kill %d of pipeline %d (%s)", i, p, dir) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// fKillWriter runs one writer in dir, kills it after a random number of
// acknowledgements and a random pause, and checks what it left.
func fKillWriter(t *testing.T, dir string, r *rand.Rand) error {
	cmd := child(t, "fnd-writer", "FND_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	acks := make(chan string, 1024)
	go func() {
		defer close(acks)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			acks <- sc.Text()
		}
	}()
	var seen []string
	want := r.IntN(40)
	timeout := time.After(30 * time.Second)
	for len(seen) < want {
		select {
		case a, ok := <-acks:
			if !ok {
				cmd.Wait()
				return fmt.Errorf("writer ended after %d acknowledgements: %q", len(seen), seen)
			}
			seen = append(seen, a)
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("writer gave %d of %d acknowledgements", len(seen), want)
		}
	}
	if d := time.Duration(r.IntN(500)) * time.Microsecond; d > 0 {
		time.Sleep(d) // not synchronisation: moves the kill to a random point of a change
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	for a := range acks { // acknowledged before the kill landed
		seen = append(seen, a)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return fmt.Errorf("writer did not die of SIGKILL: %v", err)
	}
	return fCheckAcknowledged(dir, seen)
}

// fCheckAcknowledged checks that the ledger in dir holds every change in
// acks, and that its state file parses.
func fCheckAcknowledged(dir string, acks []string) error {
	if len(acks) == 0 {
		// Killed before the operation was acknowledged: whatever state
		// file exists must still parse.
		paths, _ := filepath.Glob(filepath.Join(dir, "*.operation.journal"))
		for _, p := range paths {
			id := strings.TrimSuffix(filepath.Base(p), ".operation.journal")
			if _, err := fReadState(dir, id); err != nil {
				return err
			}
		}
		return nil
	}
	kind, id, _ := strings.Cut(acks[0], " ")
	if kind != "op" {
		return fmt.Errorf("first acknowledgement %q", acks[0])
	}
	d, err := fReadState(dir, id)
	if err != nil {
		return err
	}
	if d.OperationID != id || d.Description != "kill me" || d.OperationState != "running" {
		return fmt.Errorf("state of %s: id %s, description %q, state %s", id, d.OperationID, d.Description, d.OperationState)
	}
	frames := fCallIDs(d.CallFrames)
	var temps []string
	for _, tr := range d.TempResources {
		temps = append(temps, tr.Path)
	}
	logb, err := os.ReadFile(filepath.Join(dir, id+".operation.log"))
	if err != nil {
		return err
	}
	log := string(logb)
	var open []string // acknowledged calls not acknowledged ended, oldest first
	for _, a := range acks[1:] {
		kind, v, _ := strings.Cut(a, " ")
		switch kind {
		case "start":
			open = append(open, v)
		case "end":
			if len(open) == 0 || open[0] != v {
				return fmt.Errorf("writer ended %s out of order", v)
			}
			open = open[1:]
			if slices.Contains(frames, v) {
				return fmt.Errorf("ended call %s still has a frame", v)
			}
		case "temp":
			if !slices.Contains(temps, v) {
				return fmt.Errorf("acknowledged temp resource %s lost", v)
			}
		case "log":
			if !strings.Contains(log, "[INFO] writer "+v+"\n") {
				return fmt.Errorf("acknowledged log line %s lost", v)
			}
		default:
			return fmt.Errorf("acknowledgement %q", a)
		}
	}
	// The change in flight when the kill landed may or may not have been
	// written: the writer's step i%4 is 0 or 1 for a start, 2 for the end
	// of the oldest open call.
	next := len(acks) - 1
	for i, c := range open {
		if !slices.Contains(frames, c) && !(i == 0 && next%4 == 2) {
			return fmt.Errorf("acknowledged call %s lost its frame", c)
		}
	}
	var unknown []string
	for _, f := range frames {
		if !slices.Contains(open, f) {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 1 || len(unknown) == 1 && next%4 > 1 {
		return fmt.Errorf("frames that were never acknowledged: %v (next step %d)", unknown, next%4)
	}
	for _, l := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if !fLogRE.MatchString(l) {
			return fmt.Errorf("torn log line %q", l)
		}
	}
	return nil
}

// fParseFile is fParse for use off the test goroutine.
func fParseFile(path string) (*ledger.Data, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := new(ledger.Data)
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s does not parse: %w\n%s", path, err, b)
	}
	return d, nil
}
