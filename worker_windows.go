package ledger

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// pinThread is false on Windows: the job object, not a thread, ties the
// worker to the orchestrator.
const pinThread = false

// killedExitCode is the exit status of the processes of a job that the
// ledger terminated: 137, what a shell shows for a SIGKILL.
const killedExitCode = 137

// procGroup is a worker's group on Windows: a job object with
// JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE that holds the worker and every
// process it starts (a job's processes cannot leave it unless the job
// allows it, and this one does not), and a handle to the worker process
// that keeps its pid, also the id of its console process group, reserved
// until it is released. Only this process holds the job's handle, so when
// the orchestrator dies, however it dies, Windows closes the handle and
// ends the whole tree. The fields are guarded by process.mu; a zero
// handle is closed.
type procGroup struct {
	job    windows.Handle
	proc   windows.Handle
	killed bool // the ledger terminated the job
}

// prepare creates the worker's job and has the worker created suspended,
// in a console process group of its own (CREATE_NEW_PROCESS_GROUP: Ctrl+C
// typed in the console does not reach it, a Ctrl+Break sent to the group
// does).
func (p *process) prepare() error {
	job, err := newKillOnCloseJob()
	if err != nil {
		return err
	}
	p.group.job = job // no other goroutine knows p yet
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_SUSPENDED,
	}
	return nil
}

// newKillOnCloseJob creates a job object whose processes are terminated
// when its last handle is closed. The handle is not inheritable.
func newKillOnCloseJob() (windows.Handle, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return 0, fmt.Errorf("creating a job object: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{
		BasicLimitInformation: windows.JOBOBJECT_BASIC_LIMIT_INFORMATION{
			LimitFlags: windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
		},
	}
	_, err = windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info)))
	if err != nil {
		windows.CloseHandle(job)
		return 0, fmt.Errorf("setting JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: %w", err)
	}
	return job, nil
}

// attach puts the suspended worker in its job and only then lets it run,
// so that no process it starts can be outside the job. (Were it assigned
// after it started running, a child started in between would escape the
// job.) On error the caller kills and reaps the worker.
func (p *process) attach() error {
	pid := uint32(p.cmd.Process.Pid)
	// os/exec holds a handle to the process until Wait: the pid is the
	// worker's.
	const access = windows.PROCESS_SET_QUOTA | windows.PROCESS_TERMINATE |
		windows.PROCESS_QUERY_LIMITED_INFORMATION | windows.SYNCHRONIZE
	h, err := windows.OpenProcess(access, false, pid)
	if err != nil {
		return fmt.Errorf("opening the worker process: %w", err)
	}
	p.mu.Lock()
	p.group.proc = h
	job := p.group.job
	p.mu.Unlock()
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		return fmt.Errorf("assigning the worker to its job object: %w", err)
	}
	return resumeProcess(pid)
}

// resumeProcess resumes the threads of process pid, created suspended: its
// first thread, the only one it has.
func resumeProcess(pid uint32) error {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return fmt.Errorf("listing the worker's threads: %w", err)
	}
	defer windows.CloseHandle(snap)
	resumed := 0
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != pid {
			continue
		}
		th, oerr := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if oerr != nil {
			return fmt.Errorf("opening the worker's thread: %w", oerr)
		}
		_, rerr := windows.ResumeThread(th)
		windows.CloseHandle(th)
		if rerr != nil {
			return fmt.Errorf("resuming the worker: %w", rerr)
		}
		resumed++
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return fmt.Errorf("listing the worker's threads: %w", err)
	}
	if resumed == 0 {
		return errors.New("resuming the worker: it has no thread")
	}
	return nil
}

// waitExited waits until the worker has exited. Its handle, held until
// release, keeps its pid reserved meanwhile.
func (p *process) waitExited() {
	p.mu.Lock()
	h := p.group.proc
	p.mu.Unlock()
	_, _ = windows.WaitForSingleObject(h, windows.INFINITE)
}

// signal ends the worker's job, gracefully or not, unless the worker has
// been reaped. Windows has no signals: os.Interrupt and syscall.SIGTERM
// send a Ctrl+Break to the worker's console process group (a Go worker
// sees os.Interrupt; a program without a handler exits), or, when this
// process has no console to share with the worker, terminate the job at
// once; os.Kill terminates the job. Other signals are an error.
func (p *process) signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	switch sig {
	case os.Kill:
		return p.terminateLocked()
	case os.Interrupt, syscall.SIGTERM:
		if !p.jobActiveLocked() {
			return nil // nothing left to tell
		}
		// The group id is the worker's pid, reserved by p.group.proc; a
		// Ctrl+Break never goes to a group of another process.
		if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(p.cmd.Process.Pid)); err != nil {
			return p.terminateLocked()
		}
		return nil
	}
	return fmt.Errorf("%w: signal %v: a Windows worker takes os.Interrupt or syscall.SIGTERM (a Ctrl+Break) and os.Kill", ErrInvalidArgument, sig)
}

// terminateLocked terminates every process of the job. p.mu is held.
func (p *process) terminateLocked() error {
	if p.group.job == 0 {
		return os.ErrProcessDone
	}
	if err := windows.TerminateJobObject(p.group.job, killedExitCode); err != nil {
		return err
	}
	p.group.killed = true
	return nil
}

// jobActiveLocked reports whether a process of the job is running. When
// the job cannot be asked it says yes. p.mu is held.
func (p *process) jobActiveLocked() bool {
	if p.group.job == 0 {
		return false
	}
	// JOBOBJECT_BASIC_ACCOUNTING_INFORMATION
	var info struct {
		TotalUserTime, TotalKernelTime                     int64
		ThisPeriodTotalUserTime, ThisPeriodTotalKernelTime int64
		TotalPageFaultCount, TotalProcesses                uint32
		ActiveProcesses, TotalTerminatedProcesses          uint32
	}
	err := windows.QueryInformationJobObject(p.group.job, windows.JobObjectBasicAccountingInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info)), nil)
	return err != nil || info.ActiveProcesses > 0
}

// groupRunning reports whether a process of the reaped worker's job is
// still running.
func (p *process) groupRunning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jobActiveLocked()
}

// killGroup terminates what is left of the reaped worker's job.
func (p *process) killGroup() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.terminateLocked()
}

// release closes the worker's handle and its job; closing the job ends
// whatever may still run in it.
func (p *process) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range []*windows.Handle{&p.group.proc, &p.group.job} {
		if *h != 0 {
			windows.CloseHandle(*h)
			*h = 0
		}
	}
}

// exitSignal returns os.Kill for a worker that the ledger ended by
// terminating its job (its exit status is then killedExitCode), so that
// a *WorkerError says so as on Unix, and nil otherwise: Windows has no
// signals.
func (p *process) exitSignal(state *os.ProcessState) os.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.group.killed && state.ExitCode() == killedExitCode {
		return os.Kill
	}
	return nil
}
