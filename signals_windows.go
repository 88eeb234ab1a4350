package ledger

import (
	"os"
	"syscall"

	"golang.org/x/sys/windows"
)

// handledSignals are the signals the handler takes over while operations
// are open. On Windows os/signal delivers os.Interrupt (syscall.SIGINT)
// for Ctrl+C and Ctrl+Break, and syscall.SIGTERM for the console's
// CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT and CTRL_SHUTDOWN_EVENT (then
// Windows ends the process a few seconds later whatever it does: 5 s
// after a close).
var handledSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// passOn gives sig the treatment it has in a program that does not watch
// it, once the handler no longer takes it: a console event cannot be
// raised again for this process alone, so the process exits as the
// console's default handler would have made it (see dieFrom). A program
// that watches the event itself got it too (os/signal hands a signal to
// every channel that asked for it), but it dies here all the same: such a
// program sets Options.NoSignalHandler.
func passOn(sig os.Signal) { dieFrom(sig) }

// dieFrom ends the process as the console's default handler ends it for
// a control event: with status STATUS_CONTROL_C_EXIT (0xC000013A, shown as
// -1073741510), since a console event cannot be raised again for this
// process alone.
func dieFrom(os.Signal) {
	status := uint32(windows.STATUS_CONTROL_C_EXIT)
	os.Exit(int(int32(status)))
}
