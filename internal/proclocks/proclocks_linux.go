package proclocks

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Flock is one flock of a file: held, or waited for (Blocked).
type Flock struct {
	PID     int
	Blocked bool
}

// Of returns the flocks of the file at path, held and waited for, as
// /proc/locks lists them ("1: FLOCK ADVISORY WRITE 1234 fd:01:5678 0
// EOF", a waiter's line with "->" after the number).
func Of(path string) ([]Flock, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil, err
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, err
	}
	ino := strconv.FormatUint(st.Ino, 10)
	var locks []Flock
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		blocked := len(f) > 1 && f[1] == "->"
		if blocked {
			f = append(f[:1], f[2:]...)
		}
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		dev := strings.Split(f[5], ":")
		pid, err := strconv.Atoi(f[4])
		if len(dev) != 3 || dev[2] != ino || err != nil {
			continue
		}
		locks = append(locks, Flock{PID: pid, Blocked: blocked})
	}
	return locks, nil
}

// Waiters counts the flocks that wait for the file at path.
func Waiters(path string) (int, error) {
	locks, err := Of(path)
	n := 0
	for _, l := range locks {
		if l.Blocked {
			n++
		}
	}
	return n, err
}
