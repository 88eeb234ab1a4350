// Command ledger serves a ledger directory over HTTP and inspects one.
// Given --etcd URL[,URL...] instead of --dir, it runs ledger-etcd (module
// github.com/tomdist/ledger/etcd) with the same arguments, which serves
// and inspects a ledger kept in etcd.
//
// Usage:
//
//	ledger serve --dir D [--addr 127.0.0.1:19880] [--token T] [--tls-cert F --tls-key F] [--insecure] [--debug]
//	ledger ls    --dir D [--all]
//	ledger show  --dir D ID
//	ledger log   --dir D [--debug] ID
//	ledger abort --dir D ID
//	ledger prune --dir D [--keep 20]
//
// serve runs ledger.NewServer over the directory until SIGINT or SIGTERM,
// then shuts down gracefully. It prints "listening on URL" on standard
// output once it accepts connections. It listens on loopback unless told
// otherwise, and refuses a non-loopback address without a token (--token
// or the environment variable LEDGER_TOKEN) unless --insecure is given.
// With --debug it logs one line per request on standard error.
//
// ls lists the live operations (with --all, the archived ones too); show
// prints an operation's state as JSON; log prints its log; abort sets its
// abort flag, which every participant sees at its next heartbeat; prune
// deletes the oldest archived operations beyond --keep.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tomdist/ledger"
)

func main() {
	if len(os.Args) > 2 && wantsEtcd(os.Args[2:]) {
		err := runEtcd(os.Args[1:]) // etcd.go: ledger-etcd serves etcd
		fmt.Fprintf(os.Stderr, "ledger %s: %v\n", os.Args[1], err)
		os.Exit(exitError)
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage:
  ledger serve --dir D [--addr 127.0.0.1:19880] [--token T] [--tls-cert F --tls-key F] [--insecure] [--debug]
  ledger ls    --dir D [--all]
  ledger show  --dir D ID
  ledger log   --dir D [--debug] ID
  ledger abort --dir D ID
  ledger prune --dir D [--keep 20]
`

// cliParticipant is the participant id the command writes under.
const cliParticipant = "ledger-cli"

// command is one subcommand: its flags are set up on fs, then run is
// called with the positional arguments.
type command struct {
	nargs int // positional arguments required
	setup func(fs *flag.FlagSet) func(ctx context.Context, dir string, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"serve": {0, setupServe},
	"ls":    {0, setupList},
	"show":  {1, setupShow},
	"log":   {1, setupLog},
	"abort": {1, setupAbort},
	"prune": {0, setupPrune},
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ledger: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("ledger "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the ledger directory (required)")
	exec := cmd.setup(fs)
	pos, err := parse(fs, args[1:])
	if err != nil {
		return exitUsage
	}
	if *dir == "" {
		fmt.Fprintf(stderr, "ledger %s: --dir is required\n", args[0])
		return exitUsage
	}
	if len(pos) != cmd.nargs {
		fmt.Fprintf(stderr, "ledger %s: want %d argument(s), got %d\n%s", args[0], cmd.nargs, len(pos), usage)
		return exitUsage
	}
	if err := exec(ctx, *dir, pos, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "ledger %s: %v\n", args[0], err)
		return exitError
	}
	return exitOK
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

func setupServe(fs *flag.FlagSet) func(context.Context, string, []string, io.Writer, io.Writer) error {
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", ledger.DefaultPort), "the address to listen on")
	token := fs.String("token", "", "the bearer token clients must send (default $"+ledger.TokenEnv+")")
	cert := fs.String("tls-cert", "", "serve https with this certificate file (PEM)")
	key := fs.String("tls-key", "", "the key file (PEM) of --tls-cert")
	insecure := fs.Bool("insecure", false, "allow a non-loopback address without a token")
	debug := fs.Bool("debug", false, "log every request")
	return func(ctx context.Context, dir string, _ []string, stdout, stderr io.Writer) error {
		if *token == "" {
			*token = os.Getenv(ledger.TokenEnv)
		}
		if (*cert == "") != (*key == "") {
			return errors.New("--tls-cert and --tls-key go together")
		}
		level := slog.LevelInfo
		if *debug {
			level = slog.LevelDebug
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
		return serve(ctx, serveConfig{
			opts: ledger.ServerOptions{BasePath: dir, Token: *token, Insecure: *insecure, Logger: log},
			addr: *addr, cert: *cert, key: *key,
		}, stdout, log)
	}
}

type serveConfig struct {
	opts      ledger.ServerOptions
	addr      string
	cert, key string
}

// serve listens and serves until SIGINT or SIGTERM (or ctx ends).
func serve(ctx context.Context, c serveConfig, stdout io.Writer, log *slog.Logger) error {
	if err := c.opts.CheckListenAddr(c.addr); err != nil {
		return err
	}
	srv := ledger.NewServer(c.opts)
	if err := srv.Err(); err != nil {
		return err
	}
	defer srv.Close()
	var tc *tls.Config
	if c.cert != "" {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return err
		}
		tc = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if tc != nil {
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "listening on %s://%s\n", scheme, ln.Addr())
	log.Info("serving", "dir", c.opts.BasePath, "addr", ln.Addr().String(), "tls", tc != nil, "token", c.opts.Token != "")
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

// openViewer opens a Viewer of an existing ledger directory.
func openViewer(dir string) (*ledger.Viewer, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	return ledger.OpenViewer(ledger.Options{BasePath: dir})
}

func setupList(fs *flag.FlagSet) func(context.Context, string, []string, io.Writer, io.Writer) error {
	all := fs.Bool("all", false, "list archived operations too")
	return func(ctx context.Context, dir string, _ []string, stdout, _ io.Writer) error {
		v, err := openViewer(dir)
		if err != nil {
			return err
		}
		defer v.Close()
		ids, err := v.List(ctx, false)
		if err != nil {
			return err
		}
		if *all {
			archived, err := v.List(ctx, true)
			if err != nil {
				return err
			}
			ids = append(archived, ids...)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OPERATION\tSTATE\tABORTED\tPARTICIPANTS\tFRAMES\tAGE\tDESCRIPTION")
		for _, id := range ids {
			d, err := v.State(ctx, id)
			if err != nil {
				fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\n", id, unreadable(err))
				continue
			}
			active := 0
			for _, p := range d.Participants {
				if p.State == ledger.ParticipantActive {
					active++
				}
			}
			age := time.Since(d.StartTime).Round(time.Second)
			fmt.Fprintf(tw, "%s\t%s\t%t\t%d/%d\t%d\t%v\t%s\n", id, d.OperationState, d.Aborted,
				active, len(d.Participants), len(d.CallFrames), age, oneLine(d.Description))
		}
		return tw.Flush()
	}
}

func unreadable(err error) string {
	if errors.Is(err, ledger.ErrCorruptLedger) {
		return "corrupt"
	}
	return "unreadable"
}

func oneLine(s string) string {
	s = strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(s)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func setupShow(fs *flag.FlagSet) func(context.Context, string, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, dir string, args []string, stdout, _ io.Writer) error {
		v, err := openViewer(dir)
		if err != nil {
			return err
		}
		defer v.Close()
		b, err := v.Document(ctx, args[0])
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
}

func setupLog(fs *flag.FlagSet) func(context.Context, string, []string, io.Writer, io.Writer) error {
	debug := fs.Bool("debug", false, "print the debug log instead")
	return func(ctx context.Context, dir string, args []string, stdout, _ io.Writer) error {
		v, err := openViewer(dir)
		if err != nil {
			return err
		}
		defer v.Close()
		b, err := v.Log(ctx, args[0], *debug)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
}

func setupAbort(fs *flag.FlagSet) func(context.Context, string, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, dir string, args []string, stdout, _ io.Writer) error {
		v, err := openViewer(dir)
		if err != nil {
			return err
		}
		defer v.Close()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		d, err := v.SetAbortFlag(ctx, args[0], cliParticipant)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s aborted (state %s)\n", d.OperationID, d.OperationState)
		return err
	}
}

func setupPrune(fs *flag.FlagSet) func(context.Context, string, []string, io.Writer, io.Writer) error {
	keep := fs.Int("keep", ledger.DefaultMaxBackups, "archived operations to keep")
	return func(ctx context.Context, dir string, _ []string, stdout, _ io.Writer) error {
		if *keep < 0 {
			return fmt.Errorf("--keep (%d) must not be negative", *keep)
		}
		v, err := openViewer(dir)
		if err != nil {
			return err
		}
		defer v.Close()
		removed, kept, err := v.Prune(ctx, *keep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "pruned %d archived operations, %d kept\n", removed, kept)
		return err
	}
}
