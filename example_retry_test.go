package ledger_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/tomdist/ledger"
)

// A RemoteClient retries every request that fails on the way, changes
// too: each carries an Idempotency-Key, the same in every attempt, and
// the server answers a change it has already made instead of making it
// twice. Here the server creates the operation but the answer is lost;
// the retry gets the answer, and the ledger holds one operation.
// (Options.Logger, when set, receives a line for each retry that the
// client makes after a pause.)
func ExampleRetryPolicy() {
	dir, remove := exampleDir()
	defer remove()
	srv := ledger.NewServer(ledger.ServerOptions{BasePath: dir})
	defer srv.Close()

	var mu sync.Mutex
	var keys []string // the Idempotency-Key of each create request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/operation/create" {
			srv.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		first := len(keys) == 1
		mu.Unlock()
		if first {
			srv.ServeHTTP(httptest.NewRecorder(), r) // the change is made...
			panic(http.ErrAbortHandler)              // ...and the connection cut
		}
		srv.ServeHTTP(w, r)
	}))
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := ledger.Connect(ctx, ledger.Options{
		ParticipantID: "builder",
		ServerURL:     ts.URL,
		Retry:         ledger.RetryPolicy{Attempts: 3, Backoff: 10 * time.Millisecond},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	op, err := l.CreateOperation(ctx, ledger.CreateOptions{Description: "nightly build"})
	if err != nil {
		log.Fatal(err)
	}

	mu.Lock()
	fmt.Println("create requests:", len(keys), "same key:", keys[0] == keys[1])
	mu.Unlock()
	v, err := ledger.OpenViewer(ledger.Options{BasePath: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	ids, err := v.List(ctx, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("operations:", len(ids), ids[0] == op.ID())
	if err := op.Complete(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// create requests: 2 same key: true
	// operations: 1 true
}
