// Package fuse owns roost's union filesystem: the root filesystem of every
// container, an image's read-only layers under one writable layer, served
// with go-fuse and mounted directly (no fusermount) inside a user and mount
// namespace of roost's own (see package rootless).
//
// Lower layers are served from the layer store as they are: each file's
// contents are read with pread (spliced) at its offset in the layer's tar,
// and its metadata (owners, modes, device numbers, xattrs, hard links) comes
// from the layer's index. A sparse tar entry (GNU sparse formats, read on
// first use from its headers) is served fragment by fragment, its holes as
// zeros, and SEEK_DATA/SEEK_HOLE and st_blocks tell them apart. The layers are merged once per mount by the OCI rules
// (".wh.<name>" hides a lower name, ".wh..wh..opq" makes a directory opaque);
// the lower layers are never written.
//
// A writable layer is a directory of roost's own:
//
//	<dir>/upper/   the user's plain files: what was created or copied up
//	<dir>/meta     journal of roost's metadata for upper/ (JSON lines)
//	<dir>/work/    temp files of copy-ups in progress; emptied at mount
//
// What must hold:
//   - Every host file under <dir> belongs to the user, with permissions 0600
//     (directories 0700): owners, modes, device numbers, xattrs and file types
//     other than directories, regular files and symlinks live in meta, keyed
//     by the host inode number of the upper file; whiteouts and opaque
//     directories live there too, keyed by path. So `rm -rf <dir>` always
//     works, ownership needs no subuid range, and the layer works on
//     filesystems without user xattrs (NFS).
//   - meta is appended to on every change (a crash loses nothing written
//     before it), synced at unmount when it was written to (never for an
//     Ephemeral layer), and rewritten compactly when an existing layer is
//     mounted again (temp file, fsync, rename); a new layer's journal is
//     just created, so that a container start does not wait for the disk.
//   - A lower file is copied up (contents with copy_file_range, through
//     work/, then renamed into place) before its first write, truncation,
//     chmod, chown, xattr change, utimes or hard link; after the copy-up the
//     path keeps its inode number. Inode numbers are stable for a path for
//     the life of a mount, and the names of a hard link in a layer share one;
//     copying up one name links all its visible names to the one upper file,
//     so that they never show two contents under one inode. A copy-up keeps
//     a sparse file's holes.
//   - A merged directory (upper over lower) reports st_nlink 1, as on
//     overlayfs: its true count is unknown, and 1 tells find and fts so.
//   - Mounted with default_permissions: the kernel checks access against
//     the owners and modes shown. With a single mapping (user -> 0) only
//     uid 0 exists inside, and files of unmapped owners show as root's, so
//     only modes bind (root without CAP_DAC_OVERRIDE cannot read a 0200
//     file); with a subuid range or as root, uid 1000 cannot read a 0600
//     file of root. The mount is nodev but not nosuid, so setuid programs
//     and file capabilities work for the namespace's own ids.
//   - Nothing outlives the serving process: /dev/fuse is close-on-exec
//     (go-fuse opens it without), so when the server dies the kernel aborts
//     the connection and no process waits in D state for an answer; and
//     RunMounted's command is init of its own pid namespace with a parent
//     death signal, so that it and everything it started die with the
//     server, and the mount namespace with them.
//   - Renaming a directory that has lower content fails with EXDEV, as on
//     overlayfs; callers fall back to copying. Everything else renames,
//     including RENAME_NOREPLACE and RENAME_EXCHANGE.
//   - The serving process never reads the union through its own mount.
//
// Limits: record locks are the kernel's, per process; O_TMPFILE is not
// supported. Setting ROOST_FUSE_CPUPROFILE=FILE makes the serving process of
// RunMounted write a CPU profile (see bench/fuse).
//
// WriteLayer turns a writable layer into an OCI layer tar from upper/ and
// meta alone, without reading the lower layers.
package fuse
