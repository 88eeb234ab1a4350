package dirstore

import "golang.org/x/sys/unix"

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
