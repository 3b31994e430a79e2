//go:build linux

package builder

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	for _, f := range c.FlagsUsed {
		if f != "network" {
			return fmt.Errorf("RUN --%s %w", f, errUnsupportedFlag)
		}
		switch instructions.GetNetwork(c) {
		case instructions.NetworkNone:
			network = "none"
		case instructions.NetworkHost:
			network = "host"
		}
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
	payload := "RUN " + jsonString(argv) + "\x00" + jsonString(st.cfg.Config) + "\x00network " + network
	if script != nil {
		payload += "\x00script " + script.Data
	}
	return b.commitStep(st, payload, createdBy, func(cf *v1.ConfigFile) (*v1.Hash, error) {
		var binds []string
		if script != nil {
			host := filepath.Join(b.tmpDir, "pipe-"+script.Name)
			if err := os.WriteFile(host, []byte(script.Data), 0o755); err != nil {
				return nil, err
			}
			defer os.Remove(host)
			binds = append(binds, host+":"+argv[0]+":ro")
		}
		return b.runContainer(st, argv, binds, network)
	})
}

func (b *build) runContainer(st *stageState, argv, binds []string, network string) (*v1.Hash, error) {
	cs := b.o.Containers
	cfg := v1.Config{Env: b.runEnv(st), User: st.cfg.Config.User, WorkingDir: st.cfg.Config.WorkingDir, Cmd: argv}
	ctr, err := cs.Create(container.CreateOptions{
		Image: st.base, ImageID: st.baseID, ImageCfg: &v1.ConfigFile{Config: cfg},
		Layers: st.cfg.RootFS.DiffIDs, Cmd: argv, Network: network, Mapping: b.o.Mapping, StopTimeout: -1, Volumes: binds,
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
	drop, err := mountStubs(f, base)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(copyTarWithout(pw, f, drop)) }()
	return b.putLayer(pr)
}

// mountStubs are what the container's init created to mount over (/dev,
// /proc, /sys, /etc/hosts and friends) where the image had nothing: empty,
// and not part of what the RUN did, so not part of its layer (as in
// Docker).
func mountStubs(f *os.File, base *tree) (map[string]bool, error) {
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
	hasChildOtherThan := func(dir string, drop map[string]bool) bool {
		for n := range names {
			if strings.HasPrefix(n, dir+"/") && !drop[n] {
				return true
			}
		}
		return false
	}
	drop := map[string]bool{}
	for _, stub := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf", "dev", "proc", "sys"} {
		hdr, ok := names[stub]
		if !ok {
			continue
		}
		if _, _, inBase := base.resolve(stub, false); inBase {
			continue
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size == 0 || hdr.Typeflag == tar.TypeDir && !hasChildOtherThan(stub, drop) {
			drop[stub] = true
		}
	}
	if _, _, inBase := base.resolve("etc", false); !inBase {
		if _, ok := names["etc"]; ok && !hasChildOtherThan("etc", drop) {
			drop["etc"] = true
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
