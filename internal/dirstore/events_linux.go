package dirstore

import (
	"bytes"
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Magic numbers of network file systems (statfs f_type), whose change
// events do not include other machines' writes.
var networkFS = map[int64]bool{
	0x6969:     true, // NFS
	0x517b:     true, // SMB
	0xff534d42: true, // CIFS
	0xfe534d42: true, // SMB2
	0x01021997: true, // 9P
	0x00c36400: true, // Ceph
	0x5346414f: true, // AFS
	0x65735546: true, // FUSE (sshfs and the like)
	0x47504653: true, // GPFS
	0x0bd00bd0: true, // Lustre
}

// eventsDelivered reports whether the file system of path delivers
// change events for every write, whoever makes it: not for network file
// systems.
func eventsDelivered(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return true
	}
	return !networkFS[int64(st.Type)]
}

// loudMask is what the watch of loud changes asks for: the touch of a
// journal by a loud change (IN_ATTRIB, see signalLoud), and journals
// removed or moved away (an archive). Appends (IN_MODIFY), the bulk of the
// events of a busy operation, are left out, and so are the renames of
// compactions (IN_MOVED_TO): a quiet change wakes no process that watches
// this way, even one that compacts.
const loudMask = unix.IN_ATTRIB | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// watchLoud watches dir for loud changes with an inotify instance of its
// own: each event's file name goes to name, a lost event (the queue
// overflowed) to lost, on a goroutine of its own; gone is called if the
// watch ends before stop (the directory went, or reading failed).
// fsnotify cannot leave appends out of a watch, hence the instance. The
// function returned stops the watch and waits for the goroutine.
func watchLoud(dir string, name func(string), lost, gone func()) (stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, loudMask); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking, so the runtime's poller waits for it and Close ends a
	// Read in progress.
	f := os.NewFile(uintptr(fd), "inotify")
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					gone()
				}
				return
			}
			for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
				end := unix.SizeofInotifyEvent + int(ev.Len)
				if end > len(b) {
					break
				}
				switch {
				case ev.Mask&unix.IN_IGNORED != 0:
					gone() // the watch was removed: no event follows
					return
				case ev.Mask&unix.IN_Q_OVERFLOW != 0:
					lost()
				case ev.Len > 0:
					name(string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00")))
				}
				b = b[end:]
			}
		}
	}()
	return func() {
		f.Close()
		<-done
	}, nil
}

// signalLoud tells the watches of loud changes that f, a journal, has had
// one: it sets its times to now, which needs only the right to write it
// (no ownership), through the descriptor. Without /proc, the owner of the
// file changes its mode to itself instead. Where neither can be done, or
// the writer dies between its append and this touch, the watchers see the
// change at their next wake-up or heartbeat (HeartbeatInterval): later,
// never lost.
func signalLoud(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	var uerr error
	rc.Control(func(fd uintptr) { uerr = unix.Futimes(int(fd), nil) })
	if uerr == nil {
		return
	}
	if fi, err := f.Stat(); err == nil {
		f.Chmod(fi.Mode().Perm())
	}
}
