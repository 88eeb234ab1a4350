//go:build darwin || freebsd

package ledger

import "syscall"

// groupRunning reports whether the reaped worker's process group still
// has members. These systems have no /proc to tell a zombie from a
// running process, so kill(-pgid, 0) decides: a member that has exited and
// waits for its parent to reap it counts as running. Orphans are reaped by
// init (launchd on macOS) at once, so this only matters for a zombie whose
// living parent outside the group does not reap it: then the group gets
// SIGKILL, harmless to a zombie, when its grace has passed.
func (p *process) groupRunning() bool {
	return syscall.Kill(-p.cmd.Process.Pid, 0) == nil
}
