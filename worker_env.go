package ledger

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// The environment variables a worker process receives (unless the worker
// sets NoLedgerEnv) and JoinFromEnv reads. Workers written in any language
// can use them to join the operation.
const (
	// EnvOperationID holds the id of the operation the worker works for.
	EnvOperationID = "LEDGER_OPERATION_ID"
	// EnvCallID holds the id of the orchestrator's call that runs the
	// worker, for the worker's logs.
	EnvCallID = "LEDGER_CALL_ID"
	// EnvBasePath holds the absolute ledger directory when the orchestrator
	// uses a local ledger.
	EnvBasePath = "LEDGER_BASE_PATH"
	// EnvServerURL holds the ledger server's URL when the orchestrator uses
	// a remote ledger (several, separated by commas, when it knows several
	// servers of the ledger); discovery tries it first.
	EnvServerURL = "LEDGER_SERVER_URL"
)

// JoinFromEnv joins the operation named in the environment of a worker
// process started by ExecFileResultWorker or ExecStdioWorker (or by any
// program that sets the same variables). It connects with o, taking the
// ledger's location from EnvBasePath or EnvServerURL unless o sets
// BasePath, ServerURL or ServerURLs (and a server's token from TokenEnv unless o sets
// Token, as Connect always does), and joins the operation EnvOperationID
// with jo.
// Without EnvOperationID it returns ErrNoWorkerEnv.
//
// The caller owns both results: it leaves the operation and closes the
// ledger when done. On error, nothing is left open.
func JoinFromEnv(ctx context.Context, o Options, jo JoinOptions) (Ledger, *Operation, error) {
	id := os.Getenv(EnvOperationID)
	if id == "" {
		return nil, nil, ErrNoWorkerEnv
	}
	if o.BasePath == "" && o.ServerURL == "" && len(o.ServerURLs) == 0 {
		o.BasePath = os.Getenv(EnvBasePath)
		if urls := os.Getenv(EnvServerURL); urls != "" {
			o.ServerURL, o.ServerURLs = splitURLs(urls)
		}
		if kind := os.Getenv(EnvStore); kind != "" && o.BasePath == "" && o.ServerURL == "" {
			return nil, nil, fmt.Errorf("ledger: JoinFromEnv: the ledger is in a %s store (%s): join with the JoinFromEnv of its module", kind, EnvStore)
		}
	}
	l, err := Connect(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	op, err := l.JoinOperation(ctx, id, jo)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, op, nil
}

// ledgerLocator is implemented by backends that a worker process can reach
// too: it returns where the ledger is, as a directory or a server URL.
type ledgerLocator interface {
	ledgerLocation() (basePath, serverURL string)
}

// ledgerCredential is implemented by backends that need a credential to
// reach the ledger: a worker process gets it in its environment.
type ledgerCredential interface {
	ledgerToken() string
}

// ledgerToken implements ledgerCredential: the bearer token of the server
// (Options.Token, or $LEDGER_TOKEN), or "".
func (b *remoteBackend) ledgerToken() string { return b.token }

// environ returns the worker's environment.
func (s *workerSpec) environ(op *Operation, callID string) []string {
	env := os.Environ()
	if !s.noLedgerEnv {
		// Drop inherited values (this process may be a worker itself), so
		// that the worker sees this ledger only.
		env = dropEnv(env, EnvOperationID, EnvCallID, EnvBasePath, EnvServerURL, EnvStore)
		env = append(env, EnvOperationID+"="+op.ID(), EnvCallID+"="+callID)
		// Env naming either location names the ledger: adding the other
		// would give the worker both, which Connect rejects.
		if loc, ok := op.st.c.b.(ledgerLocator); ok && !setsEnv(s.env, EnvBasePath, EnvServerURL) {
			base, url := loc.ledgerLocation()
			if base != "" {
				env = append(env, EnvBasePath+"="+base)
			}
			if url != "" {
				env = append(env, EnvServerURL+"="+url)
			}
			env = appendStoreEnv(env, s.env, op.st.c.b)
			// The token goes with this server's URL only: another
			// location named in Env must not receive it.
			if cred, ok := op.st.c.b.(ledgerCredential); ok {
				if token := cred.ledgerToken(); token != "" {
					env = append(dropEnv(env, TokenEnv), TokenEnv+"="+token)
				}
			}
		}
	}
	return append(env, s.env...)
}

// setsEnv reports whether env has an entry for one of keys.
func setsEnv(env []string, keys ...string) bool {
	return len(dropEnv(env, keys...)) != len(env)
}

// dropEnv returns env without the entries of keys.
func dropEnv(env []string, keys ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, key := range keys {
			drop = drop || k == key
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// appendStoreEnv adds to env the variables that locate the store of a
// ledger opened with Open (see StoreLocator), replacing inherited ones,
// unless the worker's own entries set one of them.
func appendStoreEnv(env, own []string, b backend) []string {
	sb, ok := b.(*storeBackend)
	if !ok {
		return env
	}
	vars := sb.workerEnv()
	keys := make([]string, 0, len(vars))
	for _, kv := range vars {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	if len(vars) == 0 || setsEnv(own, keys...) {
		return env
	}
	return append(dropEnv(env, keys...), vars...)
}

// splitURLs splits a comma-separated list of server URLs into the first
// and the others.
func splitURLs(list string) (string, []string) {
	var urls []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return "", nil
	}
	return urls[0], urls[1:]
}
