package dirstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/tomdist/ledger/journal"
)

// Liveness files live in {id}.live/:
//
//	{participant}.{pid}.lock          a lease: locked (flock) by its process
//	                                  for its lifetime; its mtime is its beat
//	{participant}.{pid}.{host}.beat   beats of a member without a lease here
//	                                  (a remote client of a server); {host}
//	                                  is a hash of the host name
//
// Each holds the member as JSON. A lease file is locked before it is
// renamed into place, so an observer never sees it unlocked while its
// process lives; a free lock proves the process gone (pid reuse cannot
// fool a lock).

// memberFile is the content of a liveness file.
type memberFile struct {
	ID    string `json:"participantId"`
	PID   int    `json:"pid"`
	Host  string `json:"host"`
	TTLms int64  `json:"ttlMs,omitempty"`
}

func (mf memberFile) member() journal.Member {
	return journal.Member{ID: mf.ID, PID: mf.PID, Host: mf.Host, TTL: time.Duration(mf.TTLms) * time.Millisecond}
}

func checkMember(id string, m journal.Member) error {
	if err := checkID(id); err != nil {
		return err
	}
	if m.ID == "" || len(m.ID) > 64 || strings.Contains(m.ID, "..") || m.ID[0] == '.' || !validID(m.ID) || strings.Contains(m.ID, ":") {
		return fmt.Errorf("dirstore: invalid participant id %q", m.ID)
	}
	if m.PID <= 0 {
		return fmt.Errorf("dirstore: invalid pid %d", m.PID)
	}
	return nil
}

func leaseName(id string, m journal.Member) string {
	return liveName(id) + "/" + m.ID + "." + strconv.Itoa(m.PID) + ".lock"
}

func beatName(id string, m journal.Member) string {
	h := fnv.New32a()
	h.Write([]byte(m.Host))
	return fmt.Sprintf("%s/%s.%d.%08x.beat", liveName(id), m.ID, m.PID, h.Sum32())
}

// lease is a held lease file.
type lease struct {
	d    *Dir
	id   string
	m    journal.Member
	name string
	fl   *flock.Flock

	mu       sync.Mutex // guards released, and the temp registry file
	released bool
}

// Hold implements journal.Store.
func (d *Dir) Hold(ctx context.Context, id string, m journal.Member) (journal.Lease, error) {
	if err := checkMember(id, m); err != nil {
		return nil, err
	}
	if m.Host == "" {
		m.Host = d.host
	}
	tmp, err := d.liveTemp(id, m)
	if err != nil {
		return nil, err
	}
	fl := flock.New(filepath.Join(d.path, filepath.FromSlash(tmp)), flock.SetFlag(os.O_RDONLY|noFollow), flock.SetPermissions(0o644))
	if ok, err := fl.TryLock(); !ok || err != nil {
		d.root.Remove(tmp)
		if err == nil {
			err = errors.New("a new file is locked by someone else")
		}
		return nil, fmt.Errorf("dirstore: lock %s: %w", tmp, err)
	}
	name := leaseName(id, m)
	if err := d.root.Rename(tmp, name); err != nil {
		fl.Unlock()
		d.root.Remove(tmp)
		return nil, err
	}
	return &lease{d: d, id: id, m: m, name: name, fl: fl}, nil
}

// liveTemp creates a temp file holding m in the liveness directory of id,
// creating the directory. The last lease to go removes the directory, so
// it may vanish between the two: then both are tried again.
func (d *Dir) liveTemp(id string, m journal.Member) (tmp string, err error) {
	for range 10 {
		if err = d.ensureDir(liveName(id)); err != nil {
			return "", err
		}
		if _, tmp, err = d.createTempFile(liveName(id), m); !errors.Is(err, fs.ErrNotExist) {
			return tmp, err
		}
	}
	return "", err
}

// createTempFile creates a temp file in dir holding m as JSON.
func (d *Dir) createTempFile(dir string, m journal.Member) (*os.File, string, error) {
	b, _ := json.Marshal(memberFile{ID: m.ID, PID: m.PID, Host: m.Host, TTLms: m.TTL.Milliseconds()})
	f, tmp, err := d.createTemp(dir)
	if err != nil {
		return nil, "", err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		d.root.Remove(tmp)
		return nil, "", err
	}
	return f, tmp, nil
}

// Beat implements journal.Lease: the lease file's mtime is the beat.
func (l *lease) Beat(ctx context.Context) error {
	now := time.Now()
	return l.d.root.Chtimes(l.name, now, now)
}

// Release implements journal.Lease: the temp registry and the file go,
// then the lock.
func (l *lease) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	l.released = true
	l.d.root.Remove(tempsName(l.id, l.m))
	l.d.root.Remove(l.name)
	l.fl.Unlock()
	l.d.root.Remove(liveName(l.id)) // fails, as it should, while others live
	return nil
}

// Beat implements journal.Store.
func (d *Dir) Beat(ctx context.Context, id string, m journal.Member) error {
	if err := checkMember(id, m); err != nil {
		return err
	}
	if !d.isLive(id) {
		return d.gone(id)
	}
	name := beatName(id, m)
	now := time.Now()
	if err := d.root.Chtimes(name, now, now); err == nil {
		return nil
	}
	tmp, err := d.liveTemp(id, m)
	if err != nil {
		return err
	}
	if err := d.root.Rename(tmp, name); err != nil {
		d.root.Remove(tmp)
		return err
	}
	if !d.isLive(id) {
		// Archived meanwhile: leave nothing behind.
		d.root.RemoveAll(liveName(id))
		return d.gone(id)
	}
	return nil
}

// isLive reports whether id has a live journal or state document.
func (d *Dir) isLive(id string) bool {
	if _, err := d.root.Lstat(journalName(id)); err == nil {
		return true
	}
	_, err := d.root.Lstat(stateName(id))
	return err == nil
}

// Vitals implements journal.Store.
func (d *Dir) Vitals(ctx context.Context, id string) ([]journal.Vital, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	names, err := readDirNames(d.root, liveName(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var vs []journal.Vital
	for _, n := range names {
		lease := strings.HasSuffix(n, ".lock")
		if !lease && !strings.HasSuffix(n, ".beat") {
			continue
		}
		v, ok := d.vital(liveName(id)+"/"+n, lease)
		if ok {
			vs = append(vs, v)
		}
	}
	return vs, nil
}

// vital reads one liveness file.
func (d *Dir) vital(name string, lease bool) (journal.Vital, bool) {
	fi, err := d.root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return journal.Vital{}, false
	}
	b, err := d.readFile(name)
	var mf memberFile
	if err != nil || json.Unmarshal(b, &mf) != nil || mf.ID == "" {
		if !lease {
			return journal.Vital{}, false
		}
		// A lease file without its member (an earlier version's): its
		// name says who, and a lease is of this host.
		var ok bool
		if mf, ok = memberOfLeaseName(path.Base(name), d.host); !ok {
			return journal.Vital{}, false
		}
	}
	v := journal.Vital{Member: mf.member(), Beat: fi.ModTime(), Lease: lease}
	if lease {
		v.Held = d.held(name)
	}
	return v, true
}

// held reports whether the lease file name is locked by its process.
func (d *Dir) held(name string) bool {
	fl := flock.New(filepath.Join(d.path, filepath.FromSlash(name)), flock.SetFlag(os.O_RDONLY|noFollow|nonBlock))
	ok, err := fl.TryRLock()
	if err != nil {
		return false // gone meanwhile
	}
	if ok {
		fl.Unlock()
		return false
	}
	return true
}

// Observe implements journal.Store: a goroutine waits, in the kernel, for
// a shared lock on the member's lease file, which it gets when the
// process holding the lease releases it or dies. The wait cannot be
// interrupted: when ctx ends, the goroutine stays until it gets the lock
// (the member's end), then ends. One goroutine serves every observer of a
// member in the process.
func (d *Dir) Observe(ctx context.Context, id string, m journal.Member) (<-chan struct{}, error) {
	if err := checkMember(id, m); err != nil {
		return nil, err
	}
	if m.Host != d.host {
		return nil, fmt.Errorf("%w: %s is on another host", journal.ErrNotObservable, m.Key())
	}
	return d.live.observe(leaseName(id, m)), nil
}

// liveness is the set of running observers of a Dir.
type liveness struct {
	d *Dir

	mu     sync.Mutex // guards waits
	waits  map[string]chan struct{}
	closed bool
}

func (lv *liveness) observe(name string) <-chan struct{} {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if ch := lv.waits[name]; ch != nil {
		return ch
	}
	ch := make(chan struct{})
	fi, err := lv.d.root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || lv.closed {
		close(ch)
		return ch
	}
	if lv.waits == nil {
		lv.waits = make(map[string]chan struct{})
	}
	lv.waits[name] = ch
	fl := flock.New(filepath.Join(lv.d.path, filepath.FromSlash(name)), flock.SetFlag(os.O_RDONLY|noFollow|nonBlock))
	go func() {
		if err := fl.RLock(); err == nil {
			fl.Unlock()
		}
		lv.mu.Lock()
		if lv.waits[name] == ch {
			delete(lv.waits, name)
		}
		lv.mu.Unlock()
		close(ch)
	}()
	return ch
}

// close stops new observations; waits in progress end with their
// members.
func (lv *liveness) close() {
	lv.mu.Lock()
	lv.closed = true
	lv.mu.Unlock()
}

// memberOfLeaseName reads "{participant}.{pid}.lock".
func memberOfLeaseName(name, host string) (memberFile, bool) {
	base, ok := strings.CutSuffix(name, ".lock")
	i := strings.LastIndexByte(base, '.')
	if !ok || i <= 0 {
		return memberFile{}, false
	}
	pid, err := strconv.Atoi(base[i+1:])
	if err != nil || pid <= 0 {
		return memberFile{}, false
	}
	return memberFile{ID: base[:i], PID: pid, Host: host}, true
}
