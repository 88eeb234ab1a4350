package dirstore

// JournalSize returns the size in bytes of the journal of the live
// operation id: what a reader that starts from nothing reads.
func (d *Dir) JournalSize(id string) (int64, error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	fi, err := d.root.Lstat(journalName(id))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
