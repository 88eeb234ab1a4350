// Command ledger serves a ledger directory over HTTP and shows what a
// ledger holds, to people and to scripts. Given --etcd URL[,URL...]
// instead of --dir, serve and prune run ledger-etcd (module
// github.com/tomdist/ledger/etcd) with the same arguments, which serves
// and prunes a ledger kept in etcd; the other commands read it through a
// server that ledger-etcd runs for them on a loopback port.
//
// Usage:
//
//	ledger serve  [--dir D] [--addr 127.0.0.1:19880] [--token T] [--tls-cert F --tls-key F] [--insecure] [--debug] [--log-format text|json]
//	              [--dart-heartbeat 5s] [--dart-stale 15s]
//	ledger ls     [--all | --archived] [--state S,...] [--json]
//	ledger show   [--json | --svg] [--lines N] ID
//	ledger watch  [--json] [ID]
//	ledger log    [--debug] [-f] [--json] ID
//	ledger abort  ID
//	ledger prune  [--keep 20]
//	ledger help   [COMMAND]
//
// Every command but serve reads the ledger named by --dir (or
// LEDGER_DIR), or the server named by --server (or LEDGER_SERVER_URL),
// with the token of --token (or LEDGER_TOKEN), or the ledger kept in etcd
// at --etcd (or LEDGER_ETCD_ENDPOINTS, key prefix LEDGER_ETCD_PREFIX);
// with none of them, the server that discovery finds on 127.0.0.1 or
// localhost, port 19880.
//
// serve runs ledger.NewServer over the directory until SIGINT or SIGTERM,
// then shuts down gracefully. It prints "listening on URL" on standard
// output once it accepts connections, serves a dashboard at /ui and
// Prometheus metrics at /metrics, and logs through log/slog on standard
// error. --dart-heartbeat and --dart-stale are the heartbeat settings by
// which Dart clients are judged (ledger.DartOptions).
//
// ls lists operations; show prints one for people (--json: its state
// document, --svg: its timeline); watch redraws them as they change; log
// prints an operation's log (-f: and follows it); abort sets the abort
// flag; prune deletes the oldest archived operations beyond --keep.
//
// Exit codes: 0 success (watch: the operation completed, or the watch was
// interrupted); 1 error; 2 bad usage (an unknown command or flag, a
// missing or malformed argument); 3 no such operation; 4 watch: the
// operation failed. Errors are one line on standard error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/tomdist/ledger"
)

func main() {
	if handedToEtcd(os.Args[1:]) {
		err := runEtcd(os.Args[1:]) // etcd.go: ledger-etcd serves etcd
		fmt.Fprintf(os.Stderr, "ledger %s: %v\n", os.Args[1], err)
		os.Exit(exitError)
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNotFound = 3
	exitFailed   = 4 // watch: the operation failed
)

// cliParticipant is the participant id the command writes under.
const cliParticipant = "ledger-cli"

// command is one subcommand.
type command struct {
	args    string // the positional arguments, for the usage line
	nargs   [2]int // how many positional arguments it takes: at least, at most
	summary string // one line for the list of commands
	help    string // what it does, for `ledger help COMMAND`
	source  bool   // it reads a ledger: --dir, --server, --token
	// setup declares the command's flags on fs and returns what runs it.
	setup func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

// env is what a command runs with.
type env struct {
	name           string // the command
	stdout, stderr io.Writer
	src            *sourceFlags // nil for commands that read no ledger
}

var commands = map[string]*command{}

const usageHead = `ledger: operations of a ledger, for people and scripts

usage: ledger COMMAND [flags] [ARGS]

commands:
`

const usageTail = `
Every command but serve reads a ledger directory (--dir, $LEDGER_DIR), or a
ledger server (--server, $LEDGER_SERVER_URL; --token, $LEDGER_TOKEN), or a
ledger in etcd (--etcd, $LEDGER_ETCD_ENDPOINTS; needs ledger-etcd); with
none, the server that answers on 127.0.0.1 or localhost, port 19880.

Exit codes: 0 success (watch: the operation completed, or Ctrl-C); 1 error;
2 bad usage (unknown command or flag, missing or malformed argument or id);
3 no such operation; 4 watch: the operation failed.

"ledger help COMMAND" or "ledger COMMAND --help" tells more.
`

// usage writes the list of commands.
func usage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-6s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, usageTail)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "help":
		return help(args[1:], stdout, stderr)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ledger: unknown command %q (ledger help lists them)\n", args[0])
		return exitUsage
	}
	e := &env{name: args[0], stdout: stdout, stderr: stderr}
	fs := newFlagSet(e.name)
	if cmd.source {
		e.src = addSourceFlags(fs)
	}
	exec := cmd.setup(fs)
	pos, err := parse(fs, args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		commandHelp(stdout, e.name, cmd, fs)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "ledger %s: %v (ledger help %s)\n", e.name, err, e.name)
		return exitUsage
	case len(pos) < cmd.nargs[0] || len(pos) > cmd.nargs[1]:
		fmt.Fprintf(stderr, "ledger %s: want %s, got %d argument(s) (ledger help %s)\n", e.name, wantArgs(cmd), len(pos), e.name)
		return exitUsage
	}
	if err := exec(ctx, e, pos); err != nil {
		return fail(e, err)
	}
	return exitOK
}

// newFlagSet returns the flag set of a command, silent: run reports its
// errors in one line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ledger "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func wantArgs(cmd *command) string {
	switch {
	case cmd.nargs[1] == 0:
		return "no arguments"
	case cmd.nargs[0] == cmd.nargs[1]:
		return cmd.args
	}
	return "at most " + cmd.args
}

// parse parses flags that may come before or after the positional
// arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// help serves `ledger help [COMMAND]`.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok || len(args) > 1 {
		fmt.Fprintf(stderr, "ledger help: unknown command %q\n", strings.Join(args, " "))
		return exitUsage
	}
	fs := newFlagSet(args[0])
	if cmd.source {
		addSourceFlags(fs)
	}
	cmd.setup(fs)
	commandHelp(stdout, args[0], cmd, fs)
	return exitOK
}

// commandHelp writes the help of one command.
func commandHelp(w io.Writer, name string, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: ledger %s [flags] %s\n\n%s\n\nflags:\n", name, cmd.args, strings.TrimSpace(cmd.help))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(w, usageTail)
}

// fail reports err in one line and returns its exit code.
func fail(e *env, err error) int {
	var ie *ledger.IDError
	code, msg := exitError, err.Error()
	switch {
	case errors.As(err, &ie):
		code, msg = exitUsage, fmt.Sprintf("invalid %s id %q: %s", ie.Kind, ie.ID, ie.Reason)
	case errors.Is(err, ledger.ErrOperationNotFound):
		code = exitNotFound
		var nf *notFoundError
		if errors.As(err, &nf) {
			msg = nf.Error()
		}
	case errors.Is(err, errFailed):
		code = exitFailed
	case errors.Is(err, ledger.ErrNoServer):
		msg += " (give --dir D or --server URL)"
	}
	var ue *usageError
	if errors.As(err, &ue) {
		code = exitUsage
	}
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "ledger: "), "\n", " ")
	fmt.Fprintf(e.stderr, "ledger %s: %s\n", e.name, msg)
	return code
}

// usageError is a bad use of a command found after its flags were parsed.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// notFoundError says which operation is not there.
type notFoundError struct {
	id  string
	err error
}

func (e *notFoundError) Error() string { return fmt.Sprintf("no operation %q, live or archived", e.id) }
func (e *notFoundError) Unwrap() error { return e.err }

// notFound names id in an error of the ledger that did not find it.
func notFound(id string, err error) error {
	if errors.Is(err, ledger.ErrOperationNotFound) {
		return &notFoundError{id: id, err: err}
	}
	return err
}

// errFailed ends a watch of an operation that failed.
var errFailed = errors.New("the operation failed")
