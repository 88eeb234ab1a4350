package ledger

import (
	"runtime"
	"syscall"
	"unsafe"
)

// pinThread is false on FreeBSD: the parent-death signal follows the
// parent process, whatever thread forked.
const pinThread = false

// setParentDeath has the kernel SIGKILL the worker when the orchestrator
// exits, even by SIGKILL (procctl PROC_PDEATHSIG_CTL, FreeBSD 11.2 and
// later, which os/exec sets in the child before exec). It reaches the
// worker only, not processes the worker started.
func setParentDeath(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}

// waitExited waits until the worker has exited without reaping it, so that
// its pid, which is also its process group's id, stays reserved while the
// rest of the group is dealt with: wait6(P_PID, pid, WEXITED|WNOWAIT), as
// os.Process does on FreeBSD.
func (p *process) waitExited() {
	for {
		err := wait6NoWait(p.cmd.Process.Pid)
		if err != syscall.EINTR {
			return // exited, or (ECHILD) not ours to wait for: Wait reports it
		}
	}
}

// wait6NoWait calls wait6(P_PID, pid, &status, WEXITED|WNOWAIT, NULL,
// NULL). Its id_t argument is 64 bits wide: two words on 32-bit systems,
// aligned to an even register on arm.
func wait6NoWait(pid int) error {
	const pPID = 0 // P_PID
	const opts = syscall.WEXITED | syscall.WNOWAIT
	var status int32
	var errno syscall.Errno
	// The pointer is converted in the call itself, as unsafe.Pointer's
	// rules for syscalls require.
	switch runtime.GOARCH {
	case "386":
		_, _, errno = syscall.Syscall9(syscall.SYS_WAIT6, pPID, uintptr(pid), 0, uintptr(unsafe.Pointer(&status)), opts, 0, 0, 0, 0)
	case "arm":
		_, _, errno = syscall.Syscall9(syscall.SYS_WAIT6, pPID, 0, uintptr(pid), 0, uintptr(unsafe.Pointer(&status)), opts, 0, 0, 0)
	default:
		_, _, errno = syscall.Syscall6(syscall.SYS_WAIT6, pPID, uintptr(pid), uintptr(unsafe.Pointer(&status)), opts, 0, 0)
	}
	if errno != 0 {
		return errno
	}
	return nil
}
