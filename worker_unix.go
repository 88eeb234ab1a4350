//go:build unix

package ledger

import (
	"fmt"
	"os"
	"syscall"
)

// procGroup is what a worker's group needs beyond the worker's pid on
// Unix: nothing, the worker's process group id is its pid.
type procGroup struct{}

// prepare puts the worker in a process group of its own and, where the
// system has one (setParentDeath), asks for the parent-death signal.
func (p *process) prepare() error {
	attr := &syscall.SysProcAttr{Setpgid: true}
	setParentDeath(attr)
	p.cmd.SysProcAttr = attr
	return nil
}

// attach has nothing to do on Unix: the worker is in its group from its
// first instruction.
func (p *process) attach() error { return nil }

// release has nothing to free on Unix.
func (p *process) release() {}

// signal sends sig to the whole process group, and to the worker itself if
// it has left the group (setsid, setpgid), unless the worker has been
// reaped.
func (p *process) signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("%w: signal %v", ErrInvalidArgument, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	pid := p.cmd.Process.Pid
	err := syscall.Kill(-pid, s)
	if pg, perr := syscall.Getpgid(pid); perr == nil && pg != pid {
		// The worker is no longer in the group the first kill reached.
		err = syscall.Kill(pid, s)
	}
	return err
}

// killGroup sends SIGKILL to what is left of the group of the reaped
// worker. The caller makes sure that the group id is still the worker's:
// sweep has not seen the group empty.
func (p *process) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// exitSignal returns the signal that ended the reaped worker, or nil.
func (p *process) exitSignal(state *os.ProcessState) os.Signal {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return nil
}
