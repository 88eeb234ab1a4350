// Command ledger-etcd serves and inspects a ledger kept in etcd. The
// ledger command runs it for every command line that names --etcd, so
// with both installed, `ledger serve --etcd URL` works as written.
//
// Usage:
//
//	ledger-etcd serve --etcd URL[,URL...] [--prefix /ledger/] [--addr 127.0.0.1:19880] [--token T] [--tls-cert F --tls-key F] [--insecure] [--debug] [--while-stdin]
//	ledger-etcd ls    --etcd URL[,URL...] [--prefix P] [--all]
//	ledger-etcd show  --etcd URL[,URL...] [--prefix P] ID
//	ledger-etcd log   --etcd URL[,URL...] [--prefix P] [--debug] ID
//	ledger-etcd abort --etcd URL[,URL...] [--prefix P] ID
//	ledger-etcd prune --etcd URL[,URL...] [--prefix P] [--keep 20]
//
// serve runs a ledger server (ledger.NewServer) over the etcd ledger
// until SIGINT or SIGTERM: a stateless front, so several may serve one
// ledger behind a load balancer, and clients given several of their URLs
// (ledger.Options.ServerURLs) fail over between them. It prints "listening
// on URL" once it accepts connections, and, like `ledger serve`, refuses a
// non-loopback address without a token (--token or LEDGER_TOKEN) unless
// --insecure is given. The etcd client's TLS and credentials come from
// the environment: ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY,
// ETCDCTL_USER ("name:password"), as etcdctl reads them. With
// --while-stdin it also stops when its standard input closes: the ledger
// command runs it so to read a ledger in etcd (`ledger show --etcd URL
// ID`, ls, watch, log -f, abort) through a server of its own on a
// loopback port, which ends with the ledger command.
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

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tomdist/ledger"
	"github.com/tomdist/ledger/etcd"
)

const usage = `usage:
  ledger-etcd serve --etcd URL[,URL...] [--prefix /ledger/] [--addr 127.0.0.1:19880] [--token T] [--tls-cert F --tls-key F] [--insecure] [--debug] [--while-stdin]
  ledger-etcd ls    --etcd URL[,URL...] [--prefix P] [--all]
  ledger-etcd show  --etcd URL[,URL...] [--prefix P] ID
  ledger-etcd log   --etcd URL[,URL...] [--prefix P] [--debug] ID
  ledger-etcd abort --etcd URL[,URL...] [--prefix P] ID
  ledger-etcd prune --etcd URL[,URL...] [--prefix P] [--keep 20]
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand: its flags are set up on fs, then run is
// called with the store and the positional arguments.
type command struct {
	nargs int
	setup func(fs *flag.FlagSet) func(ctx context.Context, s *etcd.Store, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"serve": {0, setupServe},
	"ls":    {0, setupList},
	"show":  {1, setupShow},
	"log":   {1, setupLog},
	"abort": {1, setupAbort},
	"prune": {0, setupPrune},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || commands[args[0]].setup == nil {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := commands[args[0]]
	fs := flag.NewFlagSet("ledger "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("etcd", "", "the etcd endpoints, separated by commas (required)")
	prefix := fs.String("prefix", etcd.DefaultPrefix, "the key prefix of the ledger")
	exec := cmd.setup(fs)
	pos, err := parse(fs, args[1:])
	if err != nil {
		return 2
	}
	if *endpoints == "" || len(pos) != cmd.nargs {
		fmt.Fprintf(stderr, "ledger %s: --etcd and %d argument(s) are required\n%s", args[0], cmd.nargs, usage)
		return 2
	}
	cfg, err := clientConfig(strings.Split(*endpoints, ","))
	if err != nil {
		fmt.Fprintf(stderr, "ledger %s: %v\n", args[0], err)
		return 1
	}
	s, err := etcd.Open(ctx, etcd.Config{Client: cfg, Prefix: *prefix}, etcd.StoreOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "ledger %s: %v\n", args[0], err)
		return 1
	}
	err = exec(ctx, s, pos, stdout, stderr)
	if cerr := s.Close(); err == nil && args[0] != "serve" {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "ledger %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// clientConfig is the etcd client's configuration: the endpoints, and TLS
// and credentials from etcdctl's environment variables.
func clientConfig(endpoints []string) (clientv3.Config, error) {
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second}
	if ca, cert, key := os.Getenv("ETCDCTL_CACERT"), os.Getenv("ETCDCTL_CERT"), os.Getenv("ETCDCTL_KEY"); ca != "" || cert != "" {
		tc, err := transport.TLSInfo{TrustedCAFile: ca, CertFile: cert, KeyFile: key}.ClientConfig()
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	if u := os.Getenv("ETCDCTL_USER"); u != "" {
		name, pw, ok := strings.Cut(u, ":")
		if !ok {
			return cfg, errors.New("ETCDCTL_USER must be name:password")
		}
		cfg.Username, cfg.Password = name, pw
	}
	return cfg, nil
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

func setupServe(fs *flag.FlagSet) func(context.Context, *etcd.Store, []string, io.Writer, io.Writer) error {
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", ledger.DefaultPort), "the address to listen on")
	token := fs.String("token", "", "the bearer token clients must send (default $"+ledger.TokenEnv+")")
	cert := fs.String("tls-cert", "", "serve https with this certificate file (PEM)")
	key := fs.String("tls-key", "", "the key file (PEM) of --tls-cert")
	insecure := fs.Bool("insecure", false, "allow a non-loopback address without a token")
	debug := fs.Bool("debug", false, "log every request")
	whileStdin := fs.Bool("while-stdin", false, "stop when standard input closes (the ledger command reads etcd so)")
	return func(ctx context.Context, s *etcd.Store, _ []string, stdout, stderr io.Writer) error {
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
		o := ledger.ServerOptions{Store: s, Token: *token, Insecure: *insecure, Logger: log}
		if err := o.CheckListenAddr(*addr); err != nil {
			return err
		}
		srv := ledger.NewServer(o) // owns s from here
		if err := srv.Err(); err != nil {
			return err
		}
		defer srv.Close()
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		scheme := "http"
		if *cert != "" {
			pair, err := tls.LoadX509KeyPair(*cert, *key)
			if err != nil {
				ln.Close()
				return err
			}
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
			scheme = "https"
		}
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if *whileStdin {
			go func() {
				io.Copy(io.Discard, os.Stdin)
				stop()
			}()
		}
		fmt.Fprintf(stdout, "listening on %s://%s\n", scheme, ln.Addr())
		log.Info("serving", "etcd", strings.Join(s.Client().Endpoints(), ","), "prefix", s.Prefix(), "addr", ln.Addr().String())
		err = srv.Serve(ctx, ln)
		log.Info("stopped")
		return err
	}
}

func setupList(fs *flag.FlagSet) func(context.Context, *etcd.Store, []string, io.Writer, io.Writer) error {
	all := fs.Bool("all", false, "list archived operations too")
	return func(ctx context.Context, s *etcd.Store, _ []string, stdout, _ io.Writer) error {
		v := ledger.NewViewer(s)
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
		fmt.Fprintln(tw, "OPERATION\tSTATE\tABORTED\tPARTICIPANTS\tFRAMES\tDESCRIPTION")
		for _, id := range ids {
			d, err := v.State(ctx, id)
			if err != nil {
				fmt.Fprintf(tw, "%s\tunreadable\t\t\t\t\n", id)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%t\t%d\t%d\t%s\n", id, d.OperationState, d.Aborted,
				len(d.Participants), len(d.CallFrames), strings.Join(strings.Fields(d.Description), " "))
		}
		return tw.Flush()
	}
}

func setupShow(fs *flag.FlagSet) func(context.Context, *etcd.Store, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, s *etcd.Store, args []string, stdout, _ io.Writer) error {
		b, err := ledger.NewViewer(s).Document(ctx, args[0])
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
}

func setupLog(fs *flag.FlagSet) func(context.Context, *etcd.Store, []string, io.Writer, io.Writer) error {
	debug := fs.Bool("debug", false, "print the debug log instead")
	return func(ctx context.Context, s *etcd.Store, args []string, stdout, _ io.Writer) error {
		b, err := ledger.NewViewer(s).Log(ctx, args[0], *debug)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
}

func setupAbort(fs *flag.FlagSet) func(context.Context, *etcd.Store, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, s *etcd.Store, args []string, stdout, _ io.Writer) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		d, err := ledger.NewViewer(s).SetAbortFlag(ctx, args[0], "ledger-cli")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s aborted (state %s)\n", d.OperationID, d.OperationState)
		return err
	}
}

func setupPrune(fs *flag.FlagSet) func(context.Context, *etcd.Store, []string, io.Writer, io.Writer) error {
	keep := fs.Int("keep", ledger.DefaultMaxBackups, "archived operations to keep")
	return func(ctx context.Context, s *etcd.Store, _ []string, stdout, _ io.Writer) error {
		if *keep < 0 {
			return fmt.Errorf("--keep (%d) must not be negative", *keep)
		}
		removed, kept, err := s.Prune(*keep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "pruned %d archived operations, %d kept\n", removed, kept)
		return err
	}
}
