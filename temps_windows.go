package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// errSymlinkBelowRoot is why removeBelow refuses a path: a directory on
// the way from its temp root to it is a reparse point (a symbolic link, a
// junction, a mount point) or not a directory.
var errSymlinkBelowRoot = errors.New("a directory below the temp root is a reparse point (symbolic link, junction) or not a directory")

// removeBelow deletes path, a file or a directory with everything in it,
// which must lie below root, without following a reparse point (symbolic
// link, junction, mount point) anywhere below root: every directory on the
// way is opened relative to the one before it (NtCreateFile with a root
// directory handle) with FILE_OPEN_REPARSE_POINT and refused if it is a
// reparse point, and the tree is removed through handles in the same way,
// so a link swapped in meanwhile is not followed either. A reparse point
// at path, or met inside the tree, is removed itself. A name holding ':'
// (an alternate data stream) is refused. Windows has no uids: with owner
// >= 0, removeBelow refuses, since it cannot prove the owner. Links in
// root itself are followed: the roots are the program's own
// configuration. A path that does not exist is no error.
func removeBelow(root, path string, owner int) error {
	rel, ok := below(root, path)
	if !ok {
		return fmt.Errorf("ledger: temp resource %s is not below %s", path, root)
	}
	if owner >= 0 {
		return &fs.PathError{Op: "remove", Path: path, Err: fmt.Errorf("owner uid %d cannot be checked on Windows", owner)}
	}
	parts := strings.Split(rel, string(filepath.Separator))
	for _, name := range parts {
		if strings.ContainsRune(name, ':') {
			return &fs.PathError{Op: "remove", Path: path, Err: errors.New("a name holds ':' (a data stream)")}
		}
	}
	dir, err := openRoot(root)
	if err != nil {
		return gone(err, "open", root)
	}
	at := root
	for _, name := range parts[:len(parts)-1] {
		next, attrs, err := openAt(dir, name, windows.FILE_GENERIC_READ)
		windows.CloseHandle(dir)
		at = filepath.Join(at, name)
		if err != nil {
			return gone(err, "open", at)
		}
		if !plainDir(attrs) {
			windows.CloseHandle(next)
			return &fs.PathError{Op: "remove", Path: path, Err: fmt.Errorf("%s: %w", at, errSymlinkBelowRoot)}
		}
		dir = next
	}
	defer windows.CloseHandle(dir)
	return removeAt(dir, parts[len(parts)-1], path)
}

// plainDir reports whether attrs are those of a directory that is not a
// reparse point.
func plainDir(attrs uint32) bool {
	return attrs&windows.FILE_ATTRIBUTE_DIRECTORY != 0 && attrs&windows.FILE_ATTRIBUTE_REPARSE_POINT == 0
}

// gone returns nil for no error or one that says the file does not exist,
// and the error as an *fs.PathError otherwise.
func gone(err error, op, path string) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// openRoot opens the temp root directory, following links in its path.
func openRoot(root string) (windows.Handle, error) {
	p, err := windows.UTF16PtrFromString(root)
	if err != nil {
		return 0, err
	}
	h, err := windows.CreateFile(p, windows.FILE_GENERIC_READ,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return 0, err
	}
	var fi windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(h, &fi); err != nil || fi.FileAttributes&windows.FILE_ATTRIBUTE_DIRECTORY == 0 {
		windows.CloseHandle(h)
		return 0, errors.Join(err, errors.New("not a directory"))
	}
	return h, nil
}

// openAt opens name in the directory dir for access (plus reading its
// attributes), never following a reparse point at name, and returns it
// with its attributes.
func openAt(dir windows.Handle, name string, access uint32) (windows.Handle, uint32, error) {
	objName, err := windows.NewNTUnicodeString(name)
	if err != nil {
		return 0, 0, err
	}
	oa := windows.OBJECT_ATTRIBUTES{RootDirectory: dir, ObjectName: objName, Attributes: windows.OBJ_CASE_INSENSITIVE}
	oa.Length = uint32(unsafe.Sizeof(oa))
	var h windows.Handle
	err = windows.NtCreateFile(&h, access|windows.FILE_READ_ATTRIBUTES|windows.SYNCHRONIZE, &oa, &windows.IO_STATUS_BLOCK{}, nil, 0,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, windows.FILE_OPEN,
		windows.FILE_OPEN_REPARSE_POINT|windows.FILE_OPEN_FOR_BACKUP_INTENT|windows.FILE_SYNCHRONOUS_IO_NONALERT, 0, 0)
	if err != nil {
		var st windows.NTStatus
		if errors.As(err, &st) {
			err = st.Errno() // matches fs.ErrNotExist for a missing name
		}
		return 0, 0, err
	}
	var fi windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(h, &fi); err != nil {
		windows.CloseHandle(h)
		return 0, 0, err
	}
	return h, fi.FileAttributes, nil
}

// openForRemoval opens name in dir to delete it and, if it is a
// directory, to list it. Where listing is denied it opens it to delete
// only: enough for a file or a link.
func openForRemoval(dir windows.Handle, name string) (windows.Handle, uint32, error) {
	h, attrs, err := openAt(dir, name, windows.DELETE|windows.FILE_LIST_DIRECTORY)
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		h, attrs, err = openAt(dir, name, windows.DELETE)
	}
	return h, attrs, err
}

// removeAt removes name in the directory dir (path, for messages): a
// directory with everything in it, through handles, never following a
// reparse point; anything else, a reparse point included, by deleting it
// itself.
func removeAt(dir windows.Handle, name, path string) error {
	// Entries created while the directory is emptied make the last step
	// fail with ERROR_DIR_NOT_EMPTY: empty it again, a few times.
	for range 3 {
		h, attrs, err := openForRemoval(dir, name)
		if err != nil {
			return gone(err, "open", path)
		}
		f := os.NewFile(uintptr(h), path) // closes h
		if plainDir(attrs) {
			if err := removeContents(f, path); err != nil {
				f.Close()
				return err
			}
		}
		err = deleteHandle(h)
		f.Close()
		if !errors.Is(err, windows.ERROR_DIR_NOT_EMPTY) {
			return gone(err, "remove", path)
		}
	}
	return &fs.PathError{Op: "remove", Path: path, Err: windows.ERROR_DIR_NOT_EMPTY}
}

// removeContents removes everything in the directory f (path, for
// messages), which stays open.
func removeContents(f *os.File, path string) error {
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	dir := windows.Handle(f.Fd())
	var errs []error
	for _, name := range names {
		errs = append(errs, removeAt(dir, name, filepath.Join(path, name)))
	}
	return errors.Join(errs...)
}

// deleteHandle deletes the file or empty directory h was opened for (h
// needs DELETE access): at once, with POSIX semantics, where the system
// can (Windows 10 1809 and later, NTFS), else when its last handle closes.
// A read-only file is deleted too, as on Unix.
func deleteHandle(h windows.Handle) error {
	const fileDispositionInfoEx = 21 // FILE_INFO_BY_HANDLE_CLASS FileDispositionInfoEx
	ex := uint32(windows.FILE_DISPOSITION_DELETE | windows.FILE_DISPOSITION_POSIX_SEMANTICS | windows.FILE_DISPOSITION_IGNORE_READONLY_ATTRIBUTE)
	err := windows.SetFileInformationByHandle(h, fileDispositionInfoEx, (*byte)(unsafe.Pointer(&ex)), uint32(unsafe.Sizeof(ex)))
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, windows.ERROR_INVALID_PARAMETER) && !errors.Is(err, windows.ERROR_INVALID_FUNCTION) && !errors.Is(err, windows.ERROR_NOT_SUPPORTED):
		return err
	}
	del := uint8(1) // FILE_DISPOSITION_INFO{DeleteFile: TRUE}
	return windows.SetFileInformationByHandle(h, windows.FileDispositionInfo, &del, 1)
}
