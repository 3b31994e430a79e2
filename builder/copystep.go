package builder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/sys/user"
	"github.com/roost-containers/roost/layers"
)

// copySource is one thing a COPY or ADD writes.
type copySource struct {
	name string // as the Dockerfile names it (or the match of a glob)
	// One of: context files; a node of another image; a downloaded or
	// inline file.
	files []contextFile
	tr    *tree
	node  node
	path  string // the node's path in tr
	data  string
	file  *downloaded
}

type downloaded struct {
	host    string
	size    int64
	modTime time.Time
}

// copyFlags are a COPY's or ADD's flags, expanded.
type copyFlags struct {
	from, chown, chmod string
	add                bool
	// checksum is ADD --checksum=sha256:HEX for a URL.
	checksum string
	// unsupported names a flag roost does not do yet.
	unsupported string
}

// copy is a COPY or ADD step.
func (b *build) copy(st *stageState, sd instructions.SourcesAndDest, f copyFlags) error {
	from, chown, chmod, isAdd := f.from, f.chown, f.chmod, f.add
	what := "COPY"
	if isAdd {
		what = "ADD"
	}
	if f.unsupported != "" {
		return fmt.Errorf("%s %s %w", what, f.unsupported, errUnsupportedFlag)
	}
	if f.checksum != "" {
		if len(sd.SourcePaths) != 1 || !isURL(sd.SourcePaths[0]) {
			return fmt.Errorf("ADD --checksum needs exactly one URL source")
		}
		if !strings.HasPrefix(f.checksum, "sha256:") {
			return fmt.Errorf("ADD --checksum=%s: want sha256:<hex>", f.checksum)
		}
	}
	var mode *int64
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("%s --chmod=%s: want an octal mode such as 755", what, chmod)
		}
		mm := int64(m)
		mode = &mm
	}
	raw := sd.DestPath
	abs := raw
	if !path.IsAbs(abs) {
		wd := st.cfg.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		abs = path.Join(wd, raw)
	}

	// The cache key needs no image tree: what the sources are, and the
	// parent's key, decide the result. The trees are read on a miss only.
	var payload bytes.Buffer
	fmt.Fprintf(&payload, "%s\x00%s\x00%s\x00%q\x00%s\x00", what, chown, chmod, raw, abs)
	var srcs []copySource
	var fromTree func() (*tree, error)
	switch {
	case from != "":
		var key string
		var err error
		fromTree, key, err = b.fromTree("COPY", from)
		if err != nil {
			return err
		}
		fmt.Fprintf(&payload, "from %s\x00", key)
		for _, s := range sd.SourcePaths {
			fmt.Fprintf(&payload, "%q\x00", s)
		}
	default:
		for _, s := range sd.SourcePaths {
			if isAdd && isURL(s) {
				d, sum, err := b.download(s)
				if err != nil {
					return fmt.Errorf("ADD %s: %w", s, err)
				}
				if f.checksum != "" && f.checksum != "sha256:"+sum {
					return fmt.Errorf("ADD %s: the content's digest is sha256:%s, not %s as --checksum says", s, sum, f.checksum)
				}
				u, _ := url.Parse(s)
				n := path.Base(u.Path)
				if n == "/" || n == "." {
					n = "index.html"
				}
				srcs = append(srcs, copySource{name: n, file: d})
				fmt.Fprintf(&payload, "url %q %s\x00", s, sum)
				continue
			}
			if isURL(s) {
				return fmt.Errorf("COPY cannot fetch %s: use ADD for URLs", s)
			}
			ms, err := b.bctx.sources(s)
			if err != nil {
				return err
			}
			for _, m := range ms {
				files, err := b.bctx.walk(m)
				if err != nil {
					return err
				}
				fmt.Fprintf(&payload, "src %q\x00", m)
				if err := b.bctx.hashFiles(&payload, files); err != nil {
					return err
				}
				srcs = append(srcs, copySource{name: m, files: files})
			}
		}
	}
	for _, c := range sd.SourceContents {
		srcs = append(srcs, copySource{name: c.Path, data: c.Data})
		fmt.Fprintf(&payload, "inline %q %q\x00", c.Path, c.Data)
	}
	createdBy := fmt.Sprintf("%s %s%s %s # buildkit", what, ownerFlag(chown), strings.Join(append(append([]string{}, sd.SourcePaths...), contentNames(sd)...), " "), raw)
	return b.commitStep(st, hexSum(payload.Bytes()), createdBy, func(cf *v1.ConfigFile) (*v1.Hash, error) {
		base, err := b.tree(st)
		if err != nil {
			return nil, err
		}
		own, err := resolveOwner(chown, base)
		if err != nil {
			return nil, fmt.Errorf("%s --chown=%s: %w", what, chown, err)
		}
		if fromTree != nil {
			tr, err := fromTree()
			if err != nil {
				return nil, err
			}
			for _, s := range sd.SourcePaths {
				ms, err := tr.match(s)
				if err != nil {
					return nil, fmt.Errorf("COPY --from=%s: %w", from, err)
				}
				for _, m := range ms {
					_, n, _ := tr.resolve(m, true)
					srcs = append(srcs, copySource{name: m, tr: tr, node: n, path: m})
				}
			}
		}
		dest, dn, dexists := base.resolve(abs, true)
		destDir := strings.HasSuffix(raw, "/") || raw == "." || raw == ".." || strings.HasSuffix(raw, "/.") || dexists && dn.isDir()
		if len(srcs) > 1 && !destDir {
			return nil, fmt.Errorf("when using %s with more than one source file, the destination must be a directory and end with a /", what)
		}
		pr, pw := io.Pipe()
		go func() {
			lb := newLayerBuilder(pw, base, own, mode)
			err := b.writeSources(lb, srcs, dest, destDir, isAdd)
			if err == nil {
				err = lb.close()
			}
			pw.CloseWithError(err)
		}()
		return b.putLayer(pr)
	})
}

func ownerFlag(chown string) string {
	if chown == "" {
		return ""
	}
	return "--chown=" + chown + " "
}

func contentNames(sd instructions.SourcesAndDest) []string {
	var out []string
	for _, c := range sd.SourceContents {
		out = append(out, "<<"+c.Path)
	}
	return out
}

func (b *build) writeSources(lb *layerBuilder, srcs []copySource, dest string, destDir, isAdd bool) error {
	for _, s := range srcs {
		switch {
		case s.tr != nil:
			if err := lb.copyTree(s.tr, s.path, s.node, dest, destDir); err != nil {
				return err
			}
		case s.files != nil:
			if isAdd && s.files[0].fi.Mode().IsRegular() {
				ok, err := extractIfArchive(lb, s.files[0].host, dest)
				if err != nil {
					return fmt.Errorf("ADD %s: %w", s.name, err)
				}
				if ok {
					continue
				}
			}
			if err := lb.copyContext(s.name, s.files, dest, destDir); err != nil {
				return err
			}
		default:
			target := dest
			if destDir {
				target = path.Join(dest, path.Base(s.name))
			}
			if err := lb.parents(target); err != nil {
				return err
			}
			hdr := &tar.Header{Name: target, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: lb.now}
			var r io.Reader = strings.NewReader(s.data)
			hdr.Size = int64(len(s.data))
			if s.file != nil {
				f, err := os.Open(s.file.host)
				if err != nil {
					return err
				}
				defer f.Close()
				hdr.Mode, hdr.Size, hdr.ModTime, r = 0o600, s.file.size, s.file.modTime, f
			}
			if err := lb.write(hdr, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// extractIfArchive writes the tar archive (plain or compressed) at p into
// dest and reports true, or reports false when p is no archive.
func extractIfArchive(lb *layerBuilder, p, dest string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, err := layers.Decompress(f)
	if err != nil {
		return false, nil
	}
	if _, err := tar.NewReader(r).Next(); err != nil {
		return false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	if r, err = layers.Decompress(f); err != nil {
		return false, err
	}
	return true, lb.extract(r, dest)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// download fetches an ADD URL into the build's scratch directory.
func (b *build) download(u string) (*downloaded, string, error) {
	client := b.o.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("the server answered %s", resp.Status)
	}
	f, err := os.CreateTemp(b.tmpDir, "add-")
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", err
	}
	d := &downloaded{host: f.Name(), size: n, modTime: time.Now().UTC()}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		d.modTime = lm
	}
	return d, hex.EncodeToString(h.Sum(nil)), nil
}

// fromTree finds COPY --from's stage or image: it returns a func that
// reads its tree, and a key that changes when its content does.
func (b *build) fromTree(what, from string) (func() (*tree, error), string, error) {
	if st := b.stageNamed(from); st != nil {
		return func() (*tree, error) { return b.tree(st) }, st.key, nil
	}
	img, err := b.o.Base(from, "")
	if err != nil {
		return nil, "", fmt.Errorf("%s --from=%s: no stage of that name, and no such image: %w", what, from, err)
	}
	cf, _, err := b.o.Images.Config(img.ID)
	if err != nil {
		return nil, "", err
	}
	return func() (*tree, error) { return loadTree(b.o.Images, cf.RootFS.DiffIDs) }, img.ID.Hex, nil
}

// match expands a COPY --from source (a path or glob) to the tree's paths.
func (t *tree) match(src string) ([]string, error) {
	clean := strings.TrimPrefix(path.Clean("/"+src), "/")
	if clean == "" {
		clean = "."
	}
	if !strings.ContainsAny(clean, "*?[") {
		p, _, ok := t.resolve(clean, true)
		if !ok {
			return nil, fmt.Errorf("%s: %w", src, errNotInTree)
		}
		return []string{p}, nil
	}
	var out []string
	for p := range t.files {
		if ok, err := path.Match(clean, p); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", src, err)
		} else if ok {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", src, errNotInTree)
	}
	sortStrings(out)
	return out, nil
}

// resolveOwner reads --chown: user[:group], names looked up in the
// destination image's /etc/passwd and /etc/group. A uid alone means the
// same gid, as in Docker.
func resolveOwner(spec string, t *tree) (owner, error) {
	if spec == "" {
		return owner{}, nil
	}
	u, _, hasGroup := strings.Cut(spec, ":")
	if n, err := strconv.Atoi(u); err == nil && !hasGroup {
		return owner{set: true, uid: n, gid: n}, nil
	}
	passwd, perr := t.readFile("/etc/passwd")
	group, gerr := t.readFile("/etc/group")
	if perr != nil && !errors.Is(perr, fs.ErrNotExist) {
		return owner{}, perr
	}
	if gerr != nil && !errors.Is(gerr, fs.ErrNotExist) {
		return owner{}, gerr
	}
	eu, err := user.GetExecUser(spec, &user.ExecUser{}, bytes.NewReader(passwd), bytes.NewReader(group))
	if err != nil {
		return owner{}, err
	}
	return owner{set: true, uid: eu.Uid, gid: eu.Gid}, nil
}
