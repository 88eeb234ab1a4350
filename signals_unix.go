//go:build unix

package ledger

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// handledSignals are the signals the handler takes over while operations
// are open.
var handledSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}

// passOn sends sig to the process again, once the handler no longer takes
// it: a signal that arrived while the last operation was ending gets the
// program's own treatment instead of being lost.
func passOn(sig os.Signal) {
	if s, ok := sig.(syscall.Signal); ok {
		syscall.Kill(os.Getpid(), s)
	}
}

// dieFrom ends the process with sig, as if the ledger had never taken it:
// the shell sees the usual status (128 + signal number).
func dieFrom(sig os.Signal) {
	signal.Reset(sig)
	s, _ := sig.(syscall.Signal)
	syscall.Kill(os.Getpid(), s)
	// The runtime ends the process when the signal arrives. Should it be
	// blocked or ignored anyway, exit with the status a shell would show.
	time.Sleep(time.Second)
	os.Exit(128 + int(s))
}
