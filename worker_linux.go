package ledger

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// pinThread is true on Linux: the kernel sends the parent-death signal
// when the thread that forked the worker exits, not the process, so the
// owner goroutine keeps its thread until the worker is reaped.
const pinThread = true

// setParentDeath has the kernel SIGKILL the worker when the thread that
// started it exits: with the orchestrator's death, even by SIGKILL (the
// owner goroutine keeps the thread alive until the worker is reaped). It
// reaches the worker only, not processes the worker started.
func setParentDeath(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}

// waitExited waits until the worker has exited without reaping it, so that
// its pid, which is also its process group's id, stays reserved while the
// rest of the group is dealt with.
func (p *process) waitExited() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return // exited, or (ECHILD) not ours to wait for: Wait reports it
		}
	}
}

// groupRunning reports whether a process of the reaped worker's group is
// alive (not a zombie, as are members that have exited and wait for their
// parent, such as a subreaper that does not reap, to collect them).
// kill(-pgid, 0) answers no at once for an empty group; for the rest the
// kernel has no call (kill counts zombies), so it reads /proc. When /proc
// cannot be read it says yes, so that the group is killed after its grace.
func (p *process) groupRunning() bool {
	pgid := p.cmd.Process.Pid
	if syscall.Kill(-pgid, 0) != nil {
		return false // the group is gone (or out of reach)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if state, pg, ok := parseStat(b); ok && pg == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// parseStat returns the state and process group of a /proc/<pid>/stat
// line: "pid (comm) state ppid pgrp ...", where comm may hold anything.
func parseStat(b []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}
