package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tomdist/ledger"
)

// cliFixture is a ledger directory served by a server with a token; a
// local participant alice and a remote one bob, neither beating during
// the test; a completed operation and a live one with calls of both, a
// temp resource and a warning in its log.
type cliFixture struct {
	dir, url, token string
	alice           *ledger.LocalLedger
	done, live      *ledger.Operation
}

func newCLIFixture(t *testing.T) *cliFixture {
	t.Helper()
	t.Setenv("LEDGER_DIR", "")
	t.Setenv(ledger.EnvServerURL, "")
	t.Setenv(ledger.TokenEnv, "")
	f := &cliFixture{dir: t.TempDir(), token: "cli-s3cret"}
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: f.dir, Token: f.token})
	require.NoError(t, srv.Err())
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	f.url = ts.URL
	ctx := context.Background()
	quiet := ledger.Options{HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour, NoSignalHandler: true}
	o := quiet
	o.BasePath, o.ParticipantID = f.dir, "alice"
	alice, err := ledger.NewLocalLedger(o)
	require.NoError(t, err)
	t.Cleanup(func() { alice.Close() })
	f.alice = alice
	f.done, err = alice.CreateOperation(ctx, ledger.CreateOptions{Description: "finished work"})
	require.NoError(t, err)
	require.NoError(t, f.done.Complete(ctx))
	f.live, err = alice.CreateOperation(ctx, ledger.CreateOptions{Description: "ongoing\nwork"})
	require.NoError(t, err)
	_, err = ledger.StartCall[int](ctx, f.live, ledger.CallOptions[int]{Description: "compile"})
	require.NoError(t, err)
	tmp := filepath.Join(t.TempDir(), "scratch")
	require.NoError(t, os.WriteFile(tmp, nil, 0o600))
	require.NoError(t, f.live.RegisterTempResource(ctx, tmp))
	require.NoError(t, f.live.Log(ctx, ledger.LogWarning, "disk almost full"))

	o = quiet
	o.ServerURL, o.Token, o.ParticipantID = f.url, f.token, "bob"
	bob, err := ledger.NewRemoteClient(ctx, o)
	require.NoError(t, err)
	t.Cleanup(func() { bob.Close() })
	bobOp, err := bob.JoinOperation(ctx, f.live.ID(), ledger.JoinOptions{})
	require.NoError(t, err)
	_, err = ledger.StartCall[int](ctx, bobOp, ledger.CallOptions[int]{Description: "upload"})
	require.NoError(t, err)
	return f
}

// stderrLines returns the lines of what a command wrote on stderr.
func stderrLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// TestReadCommandsOnEverySource: ls, show and log give the same answers
// over the directory and over the server, named by flags or by the
// environment.
func TestReadCommandsOnEverySource(t *testing.T) {
	f := newCLIFixture(t)
	sources := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"--dir", []string{"--dir", f.dir}, nil},
		{"--server", []string{"--server", f.url, "--token", f.token}, nil},
		{"$LEDGER_DIR", nil, map[string]string{"LEDGER_DIR": f.dir}},
		{"$LEDGER_SERVER_URL", nil, map[string]string{ledger.EnvServerURL: f.url, ledger.TokenEnv: f.token}},
	}
	first := map[string]string{}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			for k, v := range src.env {
				t.Setenv(k, v)
			}
			cmd := func(args ...string) string {
				t.Helper()
				code, out, stderr := runCmd(t, append(args, src.args...)...)
				require.Equal(t, exitOK, code, "ledger %v: %s", args, stderr)
				return out
			}
			same := func(key, out string) {
				t.Helper()
				if want, ok := first[key]; ok {
					assert.Equal(t, want, out, "%s differs from the first source's", key)
				} else {
					first[key] = out
				}
			}

			ls := cmd("ls")
			assert.Contains(t, ls, f.live.ID())
			assert.NotContains(t, ls, f.done.ID())
			assert.Contains(t, squash(ls), "running no 2/2 2")
			assert.Contains(t, ls, "ongoing work")
			all := cmd("ls", "--all")
			assert.Contains(t, all, f.done.ID())

			var docs []ledger.Data
			lsJSON := cmd("ls", "--json", "--all")
			require.NoError(t, json.Unmarshal([]byte(lsJSON), &docs))
			require.Len(t, docs, 2)
			assert.Equal(t, f.done.ID(), docs[0].OperationID)
			same("ls --json --all", lsJSON)

			showJSON := cmd("show", "--json", f.live.ID())
			same("show --json", showJSON)
			var d ledger.Data
			require.NoError(t, json.Unmarshal([]byte(showJSON), &d))
			assert.Len(t, d.CallFrames, 2)

			show := squash(cmd("show", f.live.ID()))
			for _, want := range []string{"operation " + f.live.ID(), "state running", "PARTICIPANTS (2)", "CALLS (2)",
				"compile", "upload", "(via server)", "TEMP RESOURCES (1)", "scratch", "[WARNING] alice disk almost full"} {
				assert.Contains(t, show, want)
			}

			log := cmd("log", f.live.ID())
			same("log", log)
			assert.Contains(t, log, "CALL_STARTED")
			var line logLine
			logJSON := cmd("log", "--json", f.live.ID())
			require.NoError(t, json.Unmarshal([]byte(stderrLines(logJSON)[0]), &line))
			assert.Equal(t, "alice", line.Participant)
			assert.Equal(t, "INFO", line.Level)
			assert.True(t, strings.HasPrefix(line.Message, "OPERATION_CREATED"), line.Message)

			svg := cmd("show", "--svg", f.live.ID())
			assert.Equal(t, 2, countBars(t, svg), "one bar per call")
			svgDone := cmd("show", "--svg", f.done.ID())
			assert.Equal(t, 0, countBars(t, svgDone), "an archived operation without calls")
		})
	}
}

// countBars returns the bars of a timeline SVG, which must be well formed.
func countBars(t *testing.T, doc string) int {
	t.Helper()
	n := 0
	dec := xml.NewDecoder(strings.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		require.NoError(t, err, "not well-formed:\n%s", doc)
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			for _, a := range se.Attr {
				if a.Name.Local == "data-call" {
					n++
				}
			}
		}
	}
}

// TestErrorsInOneLine: bad use, bad ids, unknown operations and refused
// tokens each give one line on stderr and the exit code the help names.
func TestErrorsInOneLine(t *testing.T) {
	f := newCLIFixture(t)
	for _, c := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"ls", "--bogus"}, nil, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"show", "--lines", "x", "id"}, nil, exitUsage, `invalid value "x" for flag -lines`},
		{[]string{"frobnicate"}, nil, exitUsage, `unknown command "frobnicate"`},
		{[]string{"show", "--dir", f.dir}, nil, exitUsage, "want ID, got 0"},
		{[]string{"show", "--dir", f.dir, "a", "b"}, nil, exitUsage, "want ID, got 2"},
		{[]string{"show", "--dir", f.dir, "../etc"}, nil, exitUsage, `invalid operation id "../etc": contains ".."`},
		{[]string{"show", "--server", f.url, "--token", f.token, "bad/id"}, nil, exitUsage, `invalid operation id "bad/id"`},
		{[]string{"show", "--dir", f.dir, "nosuch"}, nil, exitNotFound, `no operation "nosuch", live or archived`},
		{[]string{"log", "--server", f.url, "--token", f.token, "nosuch"}, nil, exitNotFound, `no operation "nosuch"`},
		{[]string{"watch", "--dir", f.dir, "nosuch"}, nil, exitNotFound, `no operation "nosuch"`},
		{[]string{"show", "--server", f.url, f.live.ID()}, nil, exitError, "missing or wrong bearer token"},
		{[]string{"ls", "--dir", f.dir, "--server", f.url}, nil, exitUsage, "--dir and --server name two ledgers"},
		{[]string{"ls"}, map[string]string{"LEDGER_DIR": f.dir, ledger.EnvServerURL: f.url}, exitUsage, "$LEDGER_DIR and $LEDGER_SERVER_URL name two ledgers"},
		{[]string{"ls", "--dir", f.dir, "--state", "bogus"}, nil, exitUsage, `--state: "bogus" is not one of`},
		{[]string{"ls", "--dir", f.dir, "--all", "--archived"}, nil, exitUsage, "exclude each other"},
		{[]string{"ls", "--dir", filepath.Join(f.dir, "missing")}, nil, exitError, "no such file or directory"},
		{[]string{"serve", "--dir", f.dir, "--log-format", "xml"}, nil, exitUsage, `--log-format: "xml" is neither text nor json`},
		{[]string{"prune", "--server", f.url, "--token", f.token}, nil, exitError, "pruned on its directory"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, out, stderr := runCmd(t, c.args...)
			assert.Equal(t, c.code, code, "stderr: %s", stderr)
			assert.Empty(t, out)
			assert.Len(t, stderrLines(stderr), 1, "%q", stderr)
			assert.Contains(t, stderr, c.want)
			assert.True(t, strings.HasPrefix(stderr, "ledger"), stderr)
		})
	}
}

// TestHelp: help for the command and for each command goes to stdout with
// exit code 0, and names the exit codes.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"help", "show"}, {"show", "--help"}, {"watch", "-h"}, {"help", "serve"}} {
		code, out, stderr := runCmd(t, args...)
		assert.Equal(t, exitOK, code, "%v: %s", args, stderr)
		assert.Contains(t, out, "Exit codes: 0 success", "%v", args)
		if len(args) > 1 && args[0] == "help" {
			assert.Contains(t, out, "usage: ledger "+args[1], "%v", args)
		}
	}
	_, out, _ := runCmd(t, "help", "show")
	for _, flag := range []string{"-dir", "-server", "-token", "-json", "-svg", "-lines"} {
		assert.Contains(t, out, flag)
	}
}

// TestLsFilters: ls keeps the states asked for, and says so in words when
// nothing is left.
func TestLsFilters(t *testing.T) {
	f := newCLIFixture(t)
	empty := t.TempDir()
	for _, c := range []struct {
		args         []string
		has, hasNone []string
	}{
		{[]string{"ls", "--dir", empty}, []string{"no live operations"}, nil},
		{[]string{"ls", "--dir", empty, "--all"}, []string{"no operations"}, nil},
		{[]string{"ls", "--dir", empty, "--archived", "--state", "failed,completed"}, []string{"no archived operations in state failed or completed"}, nil},
		{[]string{"ls", "--dir", f.dir, "--state", "completed"}, []string{"no live operations in state completed"}, nil},
		{[]string{"ls", "--dir", f.dir, "--all", "--state", "completed"}, []string{f.done.ID()}, []string{f.live.ID()}},
		{[]string{"ls", "--dir", f.dir, "--archived"}, []string{f.done.ID()}, []string{f.live.ID()}},
		{[]string{"ls", "--dir", f.dir, "--state", "running,cleanup"}, []string{f.live.ID()}, []string{f.done.ID()}},
	} {
		code, out, stderr := runCmd(t, c.args...)
		require.Equal(t, exitOK, code, "%v: %s", c.args, stderr)
		for _, s := range c.has {
			assert.Contains(t, out, s, "%v", c.args)
		}
		for _, s := range c.hasNone {
			assert.NotContains(t, out, s, "%v", c.args)
		}
	}
	code, out, _ := runCmd(t, "ls", "--dir", empty, "--json")
	assert.Equal(t, exitOK, code)
	assert.Equal(t, "[]\n", out)
}
