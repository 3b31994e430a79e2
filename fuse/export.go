package fuse

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// WriteLayer writes the writable layer in dir (as Options.Writable) to w as
// an OCI layer tar: every file of the upper layer with the owners, modes,
// device numbers and xattrs roost recorded for it, ".wh.<name>" for each
// deleted lower entry and ".wh..wh..opq" in each opaque directory. It reads
// only the writable layer, never the lower ones. The union must not be
// mounted with changes in flight while it runs.
func WriteLayer(dir string, w io.Writer) error {
	upper := filepath.Join(dir, "upper")
	m, err := loadMeta(filepath.Join(dir, "meta"), upper)
	if err != nil {
		return err
	}
	type item struct {
		path     string
		whiteout bool
	}
	var items []item
	err = filepath.WalkDir(upper, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if hp != upper {
			items = append(items, item{path: filepath.ToSlash(hp[len(upper)+1:])})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("export writable layer: %w", err)
	}
	for p, f := range m.flags {
		if f&flagWhiteout != 0 {
			items = append(items, item{path: p, whiteout: true})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].path < items[j].path })

	tw := tar.NewWriter(w)
	links := map[uint64]string{}
	for _, it := range items {
		if it.whiteout {
			dir, base := path.Split(it.path)
			if err := tw.WriteHeader(&tar.Header{Name: dir + whiteoutPrefix + base, Typeflag: tar.TypeReg, Mode: 0o600, Format: tar.FormatPAX}); err != nil {
				return fmt.Errorf("export writable layer: %w", err)
			}
			continue
		}
		if err := writeUpperEntry(tw, m, upper, it.path, links); err != nil {
			return fmt.Errorf("export %s: %w", it.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export writable layer: %w", err)
	}
	return nil
}

func writeUpperEntry(tw *tar.Writer, m *metaStore, upper, p string, links map[uint64]string) error {
	hp := filepath.Join(upper, filepath.FromSlash(p))
	fi, err := os.Lstat(hp)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	a := m.attrs[st.Ino]
	if a == nil {
		a = &attr{Mode: st.Mode}
	}
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(a.Mode & 0o7777),
		Uid:     int(a.UID),
		Gid:     int(a.GID),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	for _, k := range sortedKeys(a.Xattrs) {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = string(a.Xattrs[k])
	}
	hostType := st.Mode & syscall.S_IFMT
	typ := hostType
	if hostType == syscall.S_IFREG && a.Mode&syscall.S_IFMT != 0 {
		typ = a.Mode & syscall.S_IFMT
	}
	var data *os.File
	switch typ {
	case syscall.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case syscall.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		if hdr.Linkname, err = os.Readlink(hp); err != nil {
			return err
		}
	case syscall.S_IFCHR, syscall.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if typ == syscall.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64((a.Rdev>>8)&0xfff | (a.Rdev>>32)&^0xfff)
		hdr.Devminor = int64(a.Rdev&0xff | (a.Rdev>>12)&^0xff)
	case syscall.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case syscall.S_IFSOCK:
		return nil // tar has no sockets; neither does docker export
	default:
		if first, ok := links[st.Ino]; ok && st.Nlink > 1 {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			break
		}
		links[st.Ino] = p
		hdr.Typeflag = tar.TypeReg
		hdr.Size = fi.Size()
		if data, err = os.Open(hp); err != nil {
			return err
		}
		defer data.Close()
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if data != nil {
		if _, err := io.CopyN(tw, data, hdr.Size); err != nil {
			return err
		}
	}
	if typ == syscall.S_IFDIR && m.flags[p]&flagOpaque != 0 {
		return tw.WriteHeader(&tar.Header{Name: strings.TrimSuffix(hdr.Name, "/") + "/" + opaqueMarker, Typeflag: tar.TypeReg, Mode: 0o600, Format: tar.FormatPAX})
	}
	return nil
}
