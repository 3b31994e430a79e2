//go:build linux

package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/fuse"
)

// run is a RUN step: the command runs in a rootless container of the
// stage's image, with the stage's env, user, workdir and shell and the
// build's network; what it changed becomes the step's layer.
func (b *build) run(st *stageState, c *instructions.RunCommand) error {
	network := b.o.Network
	var mounts []*instructions.Mount
	for _, f := range c.FlagsUsed {
		switch f {
		case "network":
			switch instructions.GetNetwork(c) {
			case instructions.NetworkNone:
				network = "none"
			case instructions.NetworkHost:
				network = "host"
			}
		case "mount":
			mounts = instructions.GetMounts(c)
		default:
			return fmt.Errorf("RUN --%s %w", f, errUnsupportedFlag)
		}
	}
	rm, err := b.runMounts(st, mounts)
	if err != nil {
		return err
	}
	if b.o.Containers == nil {
		return errors.New("RUN needs a container store")
	}
	argv := b.withShell(st, c.ShellDependantCmdLine)
	var script *instructions.ShellInlineFile
	if f := c.Files; c.PrependShell && len(f) == 1 && isHeredocOnly(c.CmdLine, f[0].Name) && strings.HasPrefix(f[0].Data, "#!") {
		// A script with its own interpreter runs as a file, as buildkit
		// runs it: mounted at /dev/pipes/NAME.
		script = &f[0]
		argv = []string{"/dev/pipes/" + f[0].Name}
	}
	createdBy := "RUN " + strings.Join(argv, " ") + " # buildkit"
	payload := "RUN " + jsonString(argv) + "\x00" + jsonString(st.cfg.Config) + "\x00network " + network + "\x00mounts " + rm.key
	if script != nil {
		payload += "\x00script " + script.Data
	}
	return b.commitStep(st, payload, createdBy, func(cf *v1.ConfigFile) (*v1.Hash, error) {
		for _, prep := range rm.prepare {
			if err := prep(); err != nil {
				return nil, err
			}
		}
		binds := rm.binds
		if script != nil {
			host := filepath.Join(b.tmpDir, "pipe-"+script.Name)
			if err := os.WriteFile(host, []byte(script.Data), 0o755); err != nil {
				return nil, err
			}
			defer os.Remove(host)
			binds = append(binds, host+":"+argv[0]+":ro")
		}
		return b.runContainer(st, argv, binds, rm.tmpfs, rm.targets, network)
	})
}

// runMount is what RUN --mount flags turn into.
type runMount struct {
	binds, tmpfs []string
	// targets are the mount points, root-relative: stubs to leave out of
	// the layer.
	targets []string
	// key is what the mounts add to the step's cache key: a bind's
	// content; a cache mount's content is, as in Docker, not part of it.
	key string
	// prepare make the bind sources, when the step runs.
	prepare []func() error
}

// runMounts reads RUN --mount: type=bind of the build context (read-only),
// type=tmpfs, and type=cache, which roost gives a fresh tmpfs each time (a
// cache may always start empty; keeping one would leave files of other
// owners in the store).
func (b *build) runMounts(st *stageState, mounts []*instructions.Mount) (*runMount, error) {
	rm := &runMount{}
	var key bytes.Buffer
	for _, m := range mounts {
		target := m.Target
		if !path.IsAbs(target) {
			wd := st.cfg.Config.WorkingDir
			if wd == "" {
				wd = "/"
			}
			target = path.Join(wd, target)
		}
		rm.targets = append(rm.targets, target)
		switch m.Type {
		case instructions.MountTypeCache, instructions.MountTypeTmpfs:
			opt := ""
			if m.SizeLimit > 0 {
				opt = fmt.Sprintf(":size=%d", m.SizeLimit)
			}
			rm.tmpfs = append(rm.tmpfs, target+opt)
			fmt.Fprintf(&key, "%s %s%s\x00", m.Type, target, opt)
		case instructions.MountTypeBind:
			if !m.ReadOnly {
				return nil, fmt.Errorf("RUN --mount=type=bind,rw %w: roost binds read-only", errUnsupportedFlag)
			}
			src := m.Source
			if src == "" {
				src = "."
			}
			dir, err := os.MkdirTemp(b.tmpDir, "bind-")
			if err != nil {
				return nil, err
			}
			host := filepath.Join(dir, "src")
			if m.From != "" {
				// A stage's or image's files, made into a directory
				// when the step runs.
				treeOf, fromKey, err := b.fromTree("RUN --mount", m.From)
				if err != nil {
					return nil, err
				}
				from := m.From
				rm.prepare = append(rm.prepare, func() error {
					tr, err := treeOf()
					if err != nil {
						return err
					}
					p, n, ok := tr.resolve(src, true)
					if !ok {
						return fmt.Errorf("RUN --mount=type=bind,from=%s,source=%s: %w", from, src, errNotInTree)
					}
					return materializeTree(tr, p, n, host)
				})
				fmt.Fprintf(&key, "bind %s from %s %q\x00", target, fromKey, src)
			} else {
				ms, err := b.bctx.sources(src)
				if err != nil {
					return nil, err
				}
				if len(ms) != 1 {
					return nil, fmt.Errorf("RUN --mount=type=bind,source=%s names %d files, want one", src, len(ms))
				}
				files, err := b.bctx.walk(ms[0])
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&key, "bind %s %q\x00", target, ms[0])
				if err := b.bctx.hashFiles(&key, files); err != nil {
					return nil, err
				}
				// A copy (hard links where it can) without what
				// .dockerignore leaves out, as Docker's context has it.
				rm.prepare = append(rm.prepare, func() error { return materializeContext(files, host) })
			}
			rm.binds = append(rm.binds, host+":"+target+":ro")
		case instructions.MountTypeSecret:
			// Not part of the cache key, as in Docker: a secret's
			// value must not leave a trace.
			if m.Env != nil {
				return nil, fmt.Errorf("RUN --mount=type=secret,env= %w", errUnsupportedFlag)
			}
			id := m.CacheID
			if id == "" {
				id = path.Base(m.Target)
			}
			if m.Target == "" {
				target = "/run/secrets/" + id
				rm.targets[len(rm.targets)-1] = target
			}
			src, ok := b.o.Secrets[id]
			if !ok {
				if m.Required {
					return nil, fmt.Errorf("secret %s is required: give it with --secret id=%s,src=FILE", id, id)
				}
				continue
			}
			rm.binds = append(rm.binds, src+":"+target+":ro")
		default:
			return nil, fmt.Errorf("RUN --mount=type=%s %w", m.Type, errUnsupportedFlag)
		}
	}
	rm.key = hexSum(key.Bytes())
	return rm, nil
}

func (b *build) runContainer(st *stageState, argv, binds, tmpfs, targets []string, network string) (*v1.Hash, error) {
	cs := b.o.Containers
	cfg := v1.Config{Env: b.runEnv(st), User: st.cfg.Config.User, WorkingDir: st.cfg.Config.WorkingDir, Cmd: argv}
	ctr, err := cs.Create(container.CreateOptions{
		Image: st.base, ImageID: st.baseID, ImageCfg: &v1.ConfigFile{Config: cfg},
		Layers: st.cfg.RootFS.DiffIDs, Cmd: argv, Network: network, Mapping: b.o.Mapping, StopTimeout: -1, Volumes: binds, Tmpfs: tmpfs,
	})
	if err != nil {
		return nil, err
	}
	defer cs.Remove(ctr, true, true)
	var lf []fuse.LayerFiles
	for _, d := range st.cfg.RootFS.DiffIDs {
		lf = append(lf, fuse.LayerFiles{Tar: b.o.Images.LayerTar(d), Index: b.o.Images.LayerIndex(d)})
	}
	sess, err := cs.Start(ctr, container.StartOptions{Layers: lf, Attach: true})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", strings.Join(argv, " "), err)
	}
	tail := &tailWriter{w: b.o.Out}
	code, err := sess.Stream(b.ctx, container.AttachIO{Stdout: tail, Stderr: tail})
	if err != nil {
		return nil, err
	}
	if err := cs.Wait(context.Background(), ctr); err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, &Error{File: b.file, Err: fmt.Errorf("process %q did not complete successfully: exit code: %d", strings.Join(argv, " "), code), Tail: tail.lines()}
	}
	base, err := b.tree(st)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(b.tmpDir, "run-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := fuse.WriteLayer(filepath.Join(ctr.Dir, "diff"), f); err != nil {
		return nil, err
	}
	drop, err := mountStubs(f, base, targets...)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if len(drop) == 0 {
		return b.putLayer(io.NopCloser(f))
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(copyTarWithout(pw, f, drop)) }()
	return b.putLayer(pr)
}

// mountStubs are what the container's init created to mount over (/dev,
// /proc, /sys, /etc/hosts and friends, and the targets of RUN --mount,
// with the directories above them) where the image had nothing: empty,
// and not part of what the RUN did, so not part of its layer (as in
// Docker).
func mountStubs(f *os.File, base *tree, targets ...string) (map[string]bool, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	names := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		names[strings.TrimSuffix(hdr.Name, "/")] = hdr
	}
	drop := map[string]bool{}
	hasChild := func(dir string) bool {
		for n := range names {
			if strings.HasPrefix(n, dir+"/") && !drop[n] {
				return true
			}
		}
		return false
	}
	candidates := map[string]bool{}
	for _, t := range append([]string{"etc/hostname", "etc/hosts", "etc/resolv.conf", "dev", "proc", "sys"}, targets...) {
		for p := strings.TrimPrefix(path.Clean("/"+t), "/"); p != "" && p != "."; p = path.Dir(p) {
			candidates[p] = true
		}
	}
	var order []string
	for p := range candidates {
		order = append(order, p)
	}
	// Deepest first, so that a directory goes once its stubs have gone.
	sort.Slice(order, func(i, j int) bool { return strings.Count(order[i], "/") > strings.Count(order[j], "/") })
	for _, p := range order {
		hdr, ok := names[p]
		if !ok {
			continue
		}
		if _, _, inBase := base.resolve(p, false); inBase {
			continue
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size == 0 || hdr.Typeflag == tar.TypeDir && !hasChild(p) {
			drop[p] = true
		}
	}
	return drop, nil
}

// copyTarWithout copies the tar r to w, leaving out the entries in drop.
func copyTarWithout(w io.Writer, r io.Reader, drop map[string]bool) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		if drop[strings.TrimSuffix(hdr.Name, "/")] {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// putLayer stores the layer tar read from r; an empty tar adds no layer.
func (b *build) putLayer(r io.ReadCloser) (*v1.Hash, error) {
	defer r.Close()
	d, size, err := b.o.Images.PutLayer(r)
	if err != nil {
		return nil, err
	}
	if size <= 1024 {
		return nil, nil // only the end-of-archive blocks: nothing changed
	}
	return &d, nil
}

// tailWriter passes output on and keeps its last lines.
type tailWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return t.w.Write(p)
}

func (t *tailWriter) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ls := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	if len(ls) > 10 {
		ls = ls[len(ls)-10:]
	}
	return ls
}

// materializeContext makes a directory (or file) at dst of the context
// files of one source: hard links to the context's files where the
// filesystem allows, copies elsewhere.
func materializeContext(files []contextFile, dst string) error {
	for _, f := range files {
		p := filepath.Join(dst, filepath.FromSlash(f.rel))
		var err error
		switch {
		case f.fi.IsDir():
			err = os.MkdirAll(p, f.fi.Mode().Perm()|0o700)
		case f.link != "":
			err = os.Symlink(f.link, p)
		case f.fi.Mode().IsRegular():
			if err = os.Link(f.host, p); err != nil {
				err = copyFile(f.host, p, f.fi.Mode().Perm())
			}
		}
		if err != nil {
			return fmt.Errorf("bind the build context: %w", err)
		}
	}
	return nil
}

// materializeTree writes the file or directory p of an image's tree to
// dst on the host (owned by the caller, modes kept).
func materializeTree(t *tree, p string, n node, dst string) error {
	write := func(name string, n node) error {
		switch n.e.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(name, os.FileMode(n.e.Mode).Perm()|0o700)
		case tar.TypeSymlink:
			return os.Symlink(n.e.Linkname, name)
		case tar.TypeReg, tar.TypeLink:
			r, err := t.open(n)
			if err != nil {
				return err
			}
			defer r.Close()
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(n.e.Mode).Perm()|0o400)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, r)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return nil // devices and pipes are not bound
	}
	if err := write(dst, n); err != nil {
		return fmt.Errorf("bind %s: %w", p, err)
	}
	if !n.isDir() {
		return nil
	}
	for _, q := range t.under(p) {
		rel := strings.TrimPrefix(q, p+"/")
		if p == "." {
			rel = q
		}
		if err := write(filepath.Join(dst, filepath.FromSlash(rel)), t.files[q]); err != nil {
			return fmt.Errorf("bind %s: %w", q, err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o400)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
