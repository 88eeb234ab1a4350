package ledger

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pinThread is false on macOS: there is no parent-death signal to bind.
const pinThread = false

// setParentDeath does nothing: macOS has no parent-death signal. A worker
// outlives an orchestrator that dies without running its CleanupHandler
// (SIGKILL, a crash); see the README's Platforms section.
func setParentDeath(*syscall.SysProcAttr) {}

// exitRecheck is how often waitExited looks at the worker's state besides
// waiting for the kernel's word, should the word have come before it
// listened.
const exitRecheck = time.Second

// waitExited waits until the worker has exited without reaping it, so that
// its pid, which is also its process group's id, stays reserved while the
// rest of the group is dealt with. macOS has no waitid with WNOWAIT in
// reach: a kqueue tells of the exit (EVFILT_PROC, NOTE_EXIT), and the
// process's state (SZOMB: exited, not reaped) is read with sysctl, first
// and then every exitRecheck, in case the exit came before the kqueue
// listened. Without a kqueue it polls the state.
func (p *process) waitExited() {
	pid := p.cmd.Process.Pid
	kq, err := unix.Kqueue()
	if err != nil {
		pollExited(pid)
		return
	}
	defer unix.Close(kq)
	var ev [1]unix.Kevent_t
	unix.SetKevent(&ev[0], pid, unix.EVFILT_PROC, unix.EV_ADD|unix.EV_ONESHOT)
	ev[0].Fflags = unix.NOTE_EXIT
	switch _, err := unix.Kevent(kq, ev[:], nil, nil); {
	case errors.Is(err, unix.ESRCH):
		return // no longer running; the unreaped child is no other process
	case err != nil:
		pollExited(pid)
		return
	}
	timeout := unix.NsecToTimespec(int64(exitRecheck))
	for {
		if z, err := zombie(pid); z && err == nil {
			return
		}
		if n, _ := unix.Kevent(kq, nil, ev[:], &timeout); n > 0 {
			return
		}
	}
}

// pollExited waits, looking every sweepPoll, until the child pid is a
// zombie. Should its state not be readable, it returns at once: Wait,
// which reaps, then waits for the exit, as os/exec does on macOS.
func pollExited(pid int) {
	for {
		if z, err := zombie(pid); z || err != nil {
			return
		}
		time.Sleep(sweepPoll)
	}
}

// szomb is the state of a process that has exited and awaits its reaping
// (SZOMB in sys/proc.h).
const szomb = 5

// zombie reports whether process pid has exited and awaits its reaping.
func zombie(pid int) (bool, error) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return false, err
	}
	if kp.Proc.P_pid != int32(pid) {
		return false, unix.ESRCH
	}
	return kp.Proc.P_stat == szomb, nil
}
