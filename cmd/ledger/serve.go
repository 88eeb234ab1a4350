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
	"syscall"

	"github.com/tomdist/ledger"
)

func init() {
	commands["serve"] = &command{
		nargs: [2]int{0, 0}, setup: setupServe,
		summary: "serve a ledger directory over HTTP, with a dashboard and metrics",
		help: `serve runs a ledger server over the directory --dir (or $LEDGER_DIR) until
SIGINT or SIGTERM, then shuts down gracefully. It prints "listening on URL"
on standard output once it accepts connections. It listens on loopback
unless told otherwise, and refuses a non-loopback address without a token
(--token or $LEDGER_TOKEN) unless --insecure is given.

Besides the protocol it serves a dashboard at /ui (the live operations;
per operation its participants, calls, temp resources, log and timeline,
updated as they change) and Prometheus metrics at /metrics, under the
same rule as the protocol: with a token, /metrics wants it as a bearer
token and /ui asks for it once in a form and keeps a session cookie;
without one, only requests to the server's IP address or localhost pass.

It logs through log/slog on standard error (--log-format text or json):
start, stop and failures; with --debug one line per request too (method,
path, status, duration; never a query, a header or a body).`,
	}
}

func setupServe(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	dir := fs.String("dir", "", "the ledger `directory` to serve (default $LEDGER_DIR)")
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", ledger.DefaultPort), "the `address` to listen on")
	token := fs.String("token", "", "the bearer `token` clients must send (default $"+ledger.TokenEnv+")")
	cert := fs.String("tls-cert", "", "serve https with this certificate `file` (PEM)")
	key := fs.String("tls-key", "", "the key `file` (PEM) of --tls-cert")
	insecure := fs.Bool("insecure", false, "allow a non-loopback address without a token")
	debug := fs.Bool("debug", false, "log every request")
	format := fs.String("log-format", "text", "the `format` of the log: text or json")
	var dart ledger.DartOptions
	fs.DurationVar(&dart.HeartbeatInterval, "dart-heartbeat", 0, "the heartbeat `interval` of Dart clients (default 5s)")
	fs.DurationVar(&dart.StaleThreshold, "dart-stale", 0, "the stale `threshold` of Dart clients (default 15s)")
	return func(ctx context.Context, e *env, _ []string) error {
		if *dir == "" {
			*dir = os.Getenv("LEDGER_DIR")
		}
		if *dir == "" {
			return usagef("--dir (or $LEDGER_DIR) is required")
		}
		if *token == "" {
			*token = os.Getenv(ledger.TokenEnv)
		}
		if (*cert == "") != (*key == "") {
			return errors.New("--tls-cert and --tls-key go together")
		}
		log, err := newLogger(e.stderr, *format, *debug)
		if err != nil {
			return err
		}
		return serve(ctx, serveConfig{
			opts: ledger.ServerOptions{BasePath: *dir, Token: *token, Insecure: *insecure, Logger: log, Dart: dart},
			addr: *addr, cert: *cert, key: *key,
		}, e.stdout, log)
	}
}

// newLogger returns the server's logger on w: text or json, at debug
// level with debug.
func newLogger(w io.Writer, format string, debug bool) (*slog.Logger, error) {
	o := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		o.Level = slog.LevelDebug
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, usagef("--log-format: %q is neither text nor json", format)
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
	log.Info("serving", "dir", c.opts.BasePath, "addr", ln.Addr().String(), "tls", tc != nil, "token", c.opts.Token != "",
		"dashboard", fmt.Sprintf("%s://%s/ui", scheme, ln.Addr()))
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}
