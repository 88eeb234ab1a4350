package dirstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/tomdist/ledger/journal"
)

// A participant process that registers temp resources through a
// LocalLedger records them in a file next to its lease,
// {id}.live/{participant}.{pid}.temps, mode 0600. The file names its
// operation, participant, pid and host, so that it cannot be passed off as
// another's, and its owner, set by the kernel, is the user of the process
// that wrote it: the proof a survivor needs before it deletes the temp
// resources of a dead process (see package ledger, Temporary files).

// TempList is the temp registry of a participant process.
type TempList struct {
	OperationID   string   `json:"operationId"`
	ParticipantID string   `json:"participantId"`
	PID           int      `json:"pid"`
	Host          string   `json:"host"`
	Paths         []string `json:"paths"`
	// UID is the owner of the file, set by ReadTemps.
	UID int `json:"-"`
}

// maxTempList bounds the temp registry ReadTemps reads.
const maxTempList = 4 << 20

func tempsName(id string, m journal.Member) string {
	return liveName(id) + "/" + m.ID + "." + strconv.Itoa(m.PID) + ".temps"
}

// WriteTemps records paths, on host, as the temp resources of the process
// holding l, replacing what it recorded before; no paths removes the
// record. The file is replaced atomically and has mode 0600. After
// Release it does nothing.
func (l *lease) WriteTemps(host string, paths []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return nil
	}
	name := tempsName(l.id, l.m)
	if len(paths) == 0 {
		if err := l.d.root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(TempList{OperationID: l.id, ParticipantID: l.m.ID, PID: l.m.PID, Host: host, Paths: paths})
	if err != nil {
		return err
	}
	f, tmp, err := l.d.createTemp(liveName(l.id))
	if err != nil {
		return err
	}
	if err = f.Chmod(0o600); err == nil {
		_, err = f.Write(b)
	}
	if err == nil && l.d.opts.Durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.d.root.Rename(tmp, name)
	}
	if err != nil {
		l.d.root.Remove(tmp)
	}
	return err
}

// ReadTemps reads the temp registry of member m of operation id and
// returns it with UID set to the owner of the file. It refuses, with a
// *CorruptError, a registry that is not a regular file with one link,
// that others than its owner may write, or that names another operation,
// participant or pid than its place; and, where the platform cannot tell
// a file's owner, every registry. A registry that does not exist is an
// error matching fs.ErrNotExist.
func (d *Dir) ReadTemps(id string, m journal.Member) (*TempList, error) {
	if err := checkMember(id, m); err != nil {
		return nil, err
	}
	name := tempsName(id, m)
	f, err := d.root.OpenFile(name, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	uid, nlink, ok := fileOwner(fi)
	switch {
	case !ok:
		return nil, d.corrupt(name, errors.New("its owner cannot be told on this platform"))
	case !fi.Mode().IsRegular() || nlink != 1:
		return nil, d.corrupt(name, errors.New("not a regular file with one link"))
	case fi.Mode().Perm()&0o022 != 0:
		return nil, d.corrupt(name, errors.New("others than its owner may write it"))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTempList+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTempList {
		return nil, d.corrupt(name, errors.New("too large"))
	}
	var list TempList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, d.corrupt(name, err)
	}
	if list.OperationID != id || list.ParticipantID != m.ID || list.PID != m.PID {
		return nil, d.corrupt(name, fmt.Errorf("it names another process"))
	}
	list.UID = uid
	return &list, nil
}

// RemoveTemps deletes the temp registry of member m of operation id,
// whose temp resources have been dealt with.
func (d *Dir) RemoveTemps(id string, m journal.Member) {
	if checkMember(id, m) == nil {
		d.root.Remove(tempsName(id, m))
	}
}
