package builder

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/roost-containers/roost/layers"
)

// owner is a COPY --chown or ADD --chown value, resolved to numbers.
type owner struct {
	set      bool
	uid, gid int
}

// layerBuilder writes the tar of one COPY or ADD layer over base.
type layerBuilder struct {
	tw    *tar.Writer
	base  *tree
	dirs  map[string]bool // directories this layer has written
	now   time.Time
	chmod *int64
	own   owner
}

func newLayerBuilder(w io.Writer, base *tree, own owner, chmod *int64) *layerBuilder {
	return &layerBuilder{tw: tar.NewWriter(w), base: base, dirs: map[string]bool{}, now: time.Now().UTC(), own: own, chmod: chmod}
}

// isDir reports whether the root-relative path p is a directory in the
// layer being written or in base.
func (lb *layerBuilder) isDir(p string) bool {
	if lb.dirs[p] || p == "." {
		return true
	}
	_, n, ok := lb.base.resolve(p, true)
	return ok && n.isDir()
}

// parents writes the directories above p that base lacks, owned by root.
func (lb *layerBuilder) parents(p string) error {
	var missing []string
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if lb.isDir(d) {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := lb.dir(missing[i], 0o755, owner{set: true}); err != nil {
			return err
		}
	}
	return nil
}

func (lb *layerBuilder) dir(p string, mode int64, own owner) error {
	lb.dirs[p] = true
	return lb.tw.WriteHeader(&tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Mode: mode, Uid: own.uid, Gid: own.gid, ModTime: lb.now, Format: tar.FormatPAX})
}

// write writes one entry; data, when not nil, is its contents.
func (lb *layerBuilder) write(hdr *tar.Header, data io.Reader) error {
	if lb.own.set {
		hdr.Uid, hdr.Gid = lb.own.uid, lb.own.gid
	}
	if lb.chmod != nil && hdr.Typeflag != tar.TypeSymlink {
		hdr.Mode = *lb.chmod
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if hdr.Typeflag == tar.TypeDir {
		lb.dirs[strings.TrimSuffix(hdr.Name, "/")] = true
		hdr.Name = strings.TrimSuffix(hdr.Name, "/") + "/"
	}
	if err := lb.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if data != nil && hdr.Typeflag == tar.TypeReg {
		if _, err := io.CopyN(lb.tw, data, hdr.Size); err != nil {
			return err
		}
	}
	return nil
}

func (lb *layerBuilder) close() error { return lb.tw.Close() }

// hostHeader is the tar header of a context file; its owner is root, as
// Docker makes it.
func hostHeader(name string, f contextFile) (*tar.Header, error) {
	hdr, err := tar.FileInfoHeader(f.fi, f.link)
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", f.host, err)
	}
	hdr.Name, hdr.Uid, hdr.Gid = name, 0, 0
	return hdr, nil
}

// copyContext writes the context files of one source to dest (a
// root-relative path): a directory's contents go into dest; a file goes
// to dest/<name> when destDir, else to dest.
func (lb *layerBuilder) copyContext(src string, files []contextFile, dest string, destDir bool) error {
	top := files[0]
	if top.fi.IsDir() {
		if err := lb.parents(dest); err != nil {
			return err
		}
		if !lb.isDir(dest) {
			hdr, err := hostHeader(dest, top)
			if err != nil {
				return err
			}
			if err := lb.write(hdr, nil); err != nil {
				return err
			}
		}
		for _, f := range files[1:] {
			if err := lb.copyHostFile(path.Join(dest, f.rel), f); err != nil {
				return err
			}
		}
		return nil
	}
	target := dest
	if destDir {
		target = path.Join(dest, path.Base(src))
	}
	if err := lb.parents(target); err != nil {
		return err
	}
	return lb.copyHostFile(target, top)
}

func (lb *layerBuilder) copyHostFile(name string, f contextFile) error {
	if !f.fi.Mode().IsRegular() && !f.fi.IsDir() && f.fi.Mode()&fs.ModeSymlink == 0 {
		return nil // sockets, devices and pipes of a context are not copied
	}
	hdr, err := hostHeader(name, f)
	if err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return lb.write(hdr, nil)
	}
	r, err := os.Open(f.host)
	if err != nil {
		return fmt.Errorf("read build context: %w", err)
	}
	defer r.Close()
	return lb.write(hdr, r)
}

// extract writes the entries of the tar archive r under the directory dest
// (ADD of a local archive), keeping their owners unless --chown was given.
func (lb *layerBuilder) extract(r io.Reader, dest string) error {
	if err := lb.parents(path.Join(dest, "x")); err != nil {
		return err
	}
	if !lb.isDir(dest) && dest != "." {
		if err := lb.dir(dest, 0o755, lb.own); err != nil {
			return err
		}
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name, err := layers.CleanEntryName(hdr.Name)
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if name == "." {
			continue
		}
		hdr.Name = path.Join(dest, name)
		if hdr.Typeflag == tar.TypeLink {
			ln, err := layers.CleanEntryName(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("read archive: %w", err)
			}
			hdr.Linkname = path.Join(dest, ln)
		}
		if err := lb.parents(hdr.Name); err != nil {
			return err
		}
		if err := lb.write(hdr, tr); err != nil {
			return err
		}
	}
}

// copyTree writes src of another image's tree (COPY --from) to dest, with
// the files' own owners unless --chown was given.
func (lb *layerBuilder) copyTree(t *tree, src string, n node, dest string, destDir bool) error {
	if n.isDir() {
		if err := lb.parents(dest); err != nil {
			return err
		}
		if !lb.isDir(dest) {
			if err := lb.write(entryHeader(dest, n.e), nil); err != nil {
				return err
			}
		}
		for _, p := range t.under(src) {
			if err := lb.copyNode(t, path.Join(dest, strings.TrimPrefix(p, src+"/")), t.files[p]); err != nil {
				return err
			}
		}
		return nil
	}
	target := dest
	if destDir {
		target = path.Join(dest, path.Base(src))
	}
	if err := lb.parents(target); err != nil {
		return err
	}
	return lb.copyNode(t, target, n)
}

func (lb *layerBuilder) copyNode(t *tree, name string, n node) error {
	hdr := entryHeader(name, n.e)
	if hdr.Typeflag != tar.TypeReg {
		return lb.write(hdr, nil)
	}
	r, err := t.open(n)
	if err != nil {
		return err
	}
	defer r.Close()
	if n.e.Typeflag == tar.TypeLink {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		hdr.Size = int64(len(b))
		return lb.write(hdr, strings.NewReader(string(b)))
	}
	return lb.write(hdr, r)
}

func entryHeader(name string, e *layers.Entry) *tar.Header {
	hdr := &tar.Header{Name: name, Typeflag: e.Typeflag, Mode: e.Mode, Uid: e.UID, Gid: e.GID, Size: e.Size,
		ModTime: e.ModTime, Linkname: e.Linkname, Devmajor: e.Devmajor, Devminor: e.Devminor}
	if e.Typeflag == tar.TypeLink {
		hdr.Typeflag, hdr.Linkname = tar.TypeReg, ""
	}
	if e.Typeflag != tar.TypeReg && e.Typeflag != tar.TypeLink {
		hdr.Size = 0
	}
	for k, v := range e.Xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = v
	}
	return hdr
}
