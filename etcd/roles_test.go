package etcd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
)

func init() {
	roles["participant"] = participantRole
	roles["joiner"] = joinerRole
}

// participantRole joins $OP on etcd ($ENDPOINTS, $PREFIX) as $NAME with
// a stale threshold (its lease's TTL) of one second, starts a call that
// fails the operation if the process crashes, says "ready" and waits for
// its standard input to close.
func participantRole() {
	ctx := context.Background()
	c := etcd.Config{Client: clientv3.Config{Endpoints: strings.Split(os.Getenv("ENDPOINTS"), ",")}, Prefix: os.Getenv("PREFIX")}
	l, err := etcd.Connect(ctx, c, ledger.Options{
		ParticipantID: os.Getenv("NAME"), HeartbeatInterval: 200 * time.Millisecond, StaleThreshold: time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "participant:", err)
		os.Exit(1)
	}
	op, err := l.JoinOperation(ctx, os.Getenv("OP"), ledger.JoinOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "participant:", err)
		os.Exit(1)
	}
	if _, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "work"}); err != nil {
		fmt.Fprintln(os.Stderr, "participant:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	l.Close()
}

// startParticipant starts a participant child on the ledger of c and
// waits for it to be ready; it is killed when the test ends.
func startParticipant(t testing.TB, c etcd.Config, opID, name string) *exec.Cmd {
	t.Helper()
	cmd := child(t, "participant", "ENDPOINTS="+strings.Join(c.Client.Endpoints, ","), "PREFIX="+c.Prefix, "OP="+opID, "NAME="+name)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "reading from the participant")
	require.Equal(t, "ready\n", line)
	return cmd
}

// joinReport is what the joiner worker reports.
type joinReport struct {
	Operation   string `json:"operation"`
	Participant string `json:"participant"`
	SawFrame    bool   `json:"sawFrame"`
}

// joinerRole is a worker: it joins with etcd.JoinFromEnv, runs a call,
// leaves, and reports what it saw as JSON.
func joinerRole() {
	if err := runJoiner(); err != nil {
		fmt.Fprintln(os.Stderr, "joiner:", err)
		os.Exit(1)
	}
}

func runJoiner() error {
	ctx := context.Background()
	l, op, err := etcd.JoinFromEnv(ctx, etcd.Config{}, ledger.Options{ParticipantID: "joiner"}, ledger.JoinOptions{})
	if err != nil {
		return err
	}
	defer l.Close()
	call, err := ledger.StartCall[int](ctx, op, ledger.CallOptions[int]{Description: "inside the worker"})
	if err != nil {
		return err
	}
	d, err := op.State(ctx)
	if err != nil {
		return err
	}
	r := joinReport{Operation: op.ID(), Participant: op.ParticipantID(),
		SawFrame: slices.ContainsFunc(d.CallFrames, func(f ledger.CallFrame) bool { return f.CallID == call.ID() })}
	if err := call.End(ctx, 1); err != nil {
		return err
	}
	if err := op.Leave(ctx, ledger.LeaveOptions{}); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
