//go:build linux

package builder

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/fuse"
	"github.com/roost-containers/roost/layers"
)

// CommitOptions say which container's changes become an image.
type CommitOptions struct {
	// Container must be stopped or paused: its writable layer must not
	// change while it is read.
	Container *container.Container
	Images    *layers.Store
	Tag       *name.Tag
	// Changes are Dockerfile instructions applied to the config (-c).
	Changes         []string
	Message, Author string
}

// Commit makes an image of the container's image plus one layer of what
// the container changed, with the container's config (as `docker commit`),
// and returns its ID. On error the store holds no new image.
func Commit(o CommitOptions) (v1.Hash, error) {
	ctr := o.Container
	imageID, err := layers.ParseDigest(ctr.Image)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("commit %s: image %q: %w", ctr.Name, ctr.Image, err)
	}
	img, err := o.Images.Resolve(imageID.String())
	if err != nil {
		return v1.Hash{}, fmt.Errorf("commit %s: %w", ctr.Name, err)
	}
	base, _, err := o.Images.Config(img.ID)
	if err != nil {
		return v1.Hash{}, err
	}
	m, _, err := o.Images.Manifest(img)
	if err != nil {
		return v1.Hash{}, err
	}
	cf := copyConfig(base)
	c := ctr.Config
	cfg := &cf.Config
	cfg.Cmd, cfg.Entrypoint, cfg.WorkingDir, cfg.User = c.Cmd, c.Entrypoint, c.WorkingDir, c.User
	cfg.ExposedPorts, cfg.Volumes, cfg.Labels, cfg.StopSignal = c.ExposedPorts, c.Volumes, c.Labels, c.StopSignal
	cfg.Env = nil
	for _, kv := range c.Env {
		if !strings.HasPrefix(kv, "HOSTNAME=") {
			cfg.Env = append(cfg.Env, kv)
		}
	}
	for _, ch := range o.Changes {
		if err := layers.ApplyChange(cfg, ch); err != nil {
			return v1.Hash{}, err
		}
	}

	unlock, err := o.Images.Writing()
	if err != nil {
		return v1.Hash{}, err
	}
	defer unlock()
	tmp, release, err := o.Images.MkdirTemp("commit-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer release()
	f, err := os.Create(filepath.Join(tmp, "layer.tar"))
	if err != nil {
		return v1.Hash{}, err
	}
	defer f.Close()
	if err := fuse.WriteLayer(filepath.Join(ctr.Dir, "diff"), f); err != nil {
		return v1.Hash{}, fmt.Errorf("commit %s: %w", ctr.Name, err)
	}
	tr, err := loadTree(o.Images, base.RootFS.DiffIDs)
	if err != nil {
		return v1.Hash{}, err
	}
	drop, err := mountStubs(f, tr)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("commit %s: %w", ctr.Name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return v1.Hash{}, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(copyTarWithout(pw, f, drop)) }()
	diffID, _, err := o.Images.PutLayer(pr)
	pr.Close()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("commit %s: %w", ctr.Name, err)
	}

	var refs []layers.LayerRef
	for i, d := range base.RootFS.DiffIDs {
		ref := layers.LayerRef{DiffID: d}
		if i < len(m.Layers) && m.Layers[i].Digest != d {
			desc := m.Layers[i]
			ref.Blob = &desc
		}
		refs = append(refs, ref)
	}
	refs = append(refs, layers.LayerRef{DiffID: diffID})
	now := time.Now().UTC()
	cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, diffID)
	cf.History = append(cf.History, v1.History{Created: v1.Time{Time: now}, Author: o.Author,
		CreatedBy: strings.TrimSpace(ctr.Path + " " + strings.Join(ctr.Args, " ")), Comment: o.Message})
	cf.Created = v1.Time{Time: now}
	cf.Author, cf.Container = o.Author, ctr.ID
	raw, err := json.Marshal(cf)
	if err != nil {
		return v1.Hash{}, err
	}
	var tags []name.Tag
	if o.Tag != nil {
		tags = append(tags, *o.Tag)
	}
	return o.Images.AddImage(raw, refs, tags)
}
