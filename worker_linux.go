package ledger

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procAttr puts the worker in a process group of its own and, on Linux,
// has the kernel SIGKILL it when the thread that started it exits: with
// the orchestrator's death (the owner goroutine keeps the thread alive
// until the worker is reaped).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExited waits until the child pid has exited without reaping it, so
// that its pid, which is also its process group's id, stays reserved while
// the rest of the group is dealt with.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return // exited, or (ECHILD) not ours to wait for: Wait reports it
		}
	}
}

// groupRunning reports whether a process of group pgid is alive (not a
// zombie, as are members that have exited and wait for init to reap them).
// The kernel has no call for it (kill(-pgid, 0) counts zombies), so it
// reads /proc. When /proc cannot be read it says yes, so that the group is
// killed after its grace.
func groupRunning(pgid int) bool {
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
