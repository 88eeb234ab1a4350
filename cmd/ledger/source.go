package main

import (
	"context"
	"flag"
	"os"
	"strings"

	"github.com/tomdist/ledger"
)

// source is a kind of ledger the commands read, named by a flag or an
// environment variable.
type source struct {
	flag, env, usage string
	// open returns a Viewer of the ledger that value (of the flag or the
	// variable) names.
	open func(ctx context.Context, value string, sf *sourceFlags) (*ledger.Viewer, error)
}

// sources are the kinds of ledger the commands read. Another kind (an
// etcd cluster, say) is a file of its own whose init function appends
// one: its flag then appears on every command that reads a ledger.
var sources = []source{
	{flag: "dir", env: "LEDGER_DIR", usage: "read the ledger directory `D`", open: openDir},
	{flag: "server", env: ledger.EnvServerURL, usage: "read through the ledger server at `URL`", open: openServer},
}

// sourceFlags are the values of the source flags of one command line.
type sourceFlags struct {
	values map[string]*string // by source flag
	token  string             // --token
}

// addSourceFlags declares the flags of every source, and --token, on fs.
func addSourceFlags(fs *flag.FlagSet) *sourceFlags {
	sf := &sourceFlags{values: make(map[string]*string)}
	for _, s := range sources {
		sf.values[s.flag] = fs.String(s.flag, "", s.usage+" (default $"+s.env+")")
	}
	fs.StringVar(&sf.token, "token", "", "the bearer `token` of the server (default $"+ledger.TokenEnv+")")
	return sf
}

// open returns a Viewer of the ledger the command line names: the source
// whose flag is given, or else the one whose environment variable is set,
// or else the server that discovery finds.
func (sf *sourceFlags) open(ctx context.Context) (*ledger.Viewer, error) {
	s, value, err := sf.choose()
	if err != nil {
		return nil, err
	}
	if s == nil {
		return ledger.ConnectViewer(ctx, ledger.Options{Token: sf.token})
	}
	return s.open(ctx, value, sf)
}

// choose returns the source named, with its value; nil for none.
func (sf *sourceFlags) choose() (*source, string, error) {
	pick := func(get func(s *source) string, what func(s *source) string) (*source, string, error) {
		var found *source
		var names []string
		for i := range sources {
			if v := get(&sources[i]); v != "" {
				names = append(names, what(&sources[i]))
				if found == nil {
					found = &sources[i]
				}
			}
		}
		if len(names) > 1 {
			return nil, "", usagef("%s name two ledgers; give one", strings.Join(names, " and "))
		}
		if found == nil {
			return nil, "", nil
		}
		return found, get(found), nil
	}
	s, v, err := pick(func(s *source) string { return *sf.values[s.flag] }, func(s *source) string { return "--" + s.flag })
	if s != nil || err != nil {
		return s, v, err
	}
	return pick(func(s *source) string { return os.Getenv(s.env) }, func(s *source) string { return "$" + s.env })
}

func openDir(ctx context.Context, dir string, _ *sourceFlags) (*ledger.Viewer, error) {
	return ledger.ConnectViewer(ctx, ledger.Options{BasePath: dir})
}

func openServer(ctx context.Context, url string, sf *sourceFlags) (*ledger.Viewer, error) {
	return ledger.ConnectViewer(ctx, ledger.Options{ServerURL: url, Token: sf.token})
}
