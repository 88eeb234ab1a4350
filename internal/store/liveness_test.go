package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestTempRegistryRoundTrip(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	l, err := s.HoldLiveness("op1", "alice", 7)
	require.NoError(t, err)
	defer l.Release()

	require.NoError(t, l.WriteTemps("h1", []string{"/tmp/a", "/tmp/b"}))
	list, err := s.ReadTemps("op1", "alice", 7)
	require.NoError(t, err)
	assert.Equal(t, []string{"/tmp/a", "/tmp/b"}, list.Paths)
	assert.Equal(t, "h1", list.Host)
	assert.Equal(t, os.Geteuid(), list.UID)
	fi, err := os.Stat(s.tempsPath("op1", "alice", 7))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the registry must be its user's alone")

	require.NoError(t, l.WriteTemps("h1", nil))
	_, err = s.ReadTemps("op1", "alice", 7)
	assert.ErrorIs(t, err, fs.ErrNotExist, "no paths: no registry")

	require.NoError(t, l.WriteTemps("h1", []string{"/tmp/a"}))
	l.Release()
	_, err = s.ReadTemps("op1", "alice", 7)
	assert.ErrorIs(t, err, fs.ErrNotExist, "Release leaves a registry behind")
	require.NoError(t, l.WriteTemps("h1", []string{"/tmp/a"}))
	_, err = s.ReadTemps("op1", "alice", 7)
	assert.ErrorIs(t, err, fs.ErrNotExist, "a released Liveness wrote a registry")
}

// A registry is proof only as the file its process wrote: a link to one,
// a second name for one, or one of another process is refused.
func TestTempRegistryRefusesImpostors(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	real, err := s.HoldLiveness("op1", "alice", 7)
	require.NoError(t, err)
	defer real.Release()
	require.NoError(t, real.WriteTemps("h1", []string{"/tmp/a"}))
	src := s.tempsPath("op1", "alice", 7)

	require.NoError(t, os.MkdirAll(s.liveDir("op2"), 0o755))
	for name, plant := range map[string]func(dst string) error{
		"symbolic link": func(dst string) error { return os.Symlink(src, dst) },
		"hard link":     func(dst string) error { return os.Link(src, dst) },
		"copy":          func(dst string) error { return copyFile(src, dst) },
	} {
		t.Run(name, func(t *testing.T) {
			dst := s.tempsPath("op2", "mallory", 9)
			os.Remove(dst)
			require.NoError(t, plant(dst))
			list, err := s.ReadTemps("op2", "mallory", 9)
			assert.Error(t, err, "a planted registry was taken")
			assert.Nil(t, list)
		})
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

func TestProbeLiveness(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	l, err := s.HoldLiveness("op1", "alice", 7)
	require.NoError(t, err)

	p := s.ProbeLiveness("op1", "alice", 7)
	assert.True(t, p.Exists)
	assert.False(t, p.Dead, "a held lock is not dead")
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(l.path, old, old))
	require.NoError(t, l.Touch())
	assert.True(t, s.ProbeLiveness("op1", "alice", 7).Beat.After(old), "Touch did not move the time")

	// Something else than a regular file at a participant's place is no
	// liveness file: it neither blocks the probe nor proves anything.
	require.NoError(t, unix.Mkfifo(s.livePath("op1", "fifo", 1), 0o644))
	assert.Equal(t, LiveProbe{}, s.ProbeLiveness("op1", "fifo", 1))
	require.NoError(t, os.Symlink(l.path, s.livePath("op1", "link", 1)))
	assert.Equal(t, LiveProbe{}, s.ProbeLiveness("op1", "link", 1))

	l.Release()
	assert.NoError(t, l.Touch(), "Touch after Release")
	assert.False(t, s.ProbeLiveness("op1", "alice", 7).Exists)
	_, err = os.Stat(filepath.Dir(l.path))
	assert.False(t, errors.Is(err, fs.ErrNotExist), "the directory went while others were in it")
}
