package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/roost-containers/roost/layers"
)

// Volume is a named or anonymous volume.
type Volume struct {
	Name       string
	Driver     string
	Mountpoint string
	CreatedAt  time.Time
	Scope      string
	Labels     map[string]string
	Options    map[string]string
}

func (s *Store) volume(name string) (*Volume, error) {
	fi, err := os.Stat(filepath.Join(s.volumes, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no such volume: %s", name)
	}
	if err != nil {
		return nil, err
	}
	return &Volume{Name: name, Driver: "local", Mountpoint: s.VolumeDir(name), CreatedAt: fi.ModTime().UTC(), Scope: "local", Labels: map[string]string{}, Options: map[string]string{}}, nil
}

// CreateVolume creates a named volume (a random name when empty); an
// existing volume is returned as it is.
func (s *Store) CreateVolume(name string) (*Volume, error) {
	if name == "" {
		name = NewID()
	}
	if !volumeName().MatchString(name) {
		return nil, fmt.Errorf("invalid volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	if err := os.MkdirAll(s.VolumeDir(name), 0o755); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	return s.volume(name)
}

// Volume returns the named volume.
func (s *Store) Volume(name string) (*Volume, error) { return s.volume(name) }

// Volumes lists every volume, by name.
func (s *Store) Volumes() ([]*Volume, error) {
	ents, err := os.ReadDir(s.volumes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []*Volume
	for _, e := range ents {
		if v, err := s.volume(e.Name()); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// VolumeUsers returns the containers that mount each volume.
func (s *Store) VolumeUsers() (map[string][]string, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, r := range recs {
		for _, mt := range r.Mounts {
			if mt.Type == "volume" {
				m[mt.Name] = append(m[mt.Name], r.Name)
			}
		}
	}
	return m, nil
}

// RemoveVolume deletes a volume no container uses (force: even then).
func (s *Store) RemoveVolume(name string, force bool) error {
	if _, err := s.volume(name); err != nil {
		return err
	}
	users, err := s.VolumeUsers()
	if err != nil {
		return err
	}
	if u := users[name]; len(u) > 0 && !force {
		return fmt.Errorf("remove volume %s: volume is in use by container %s (%w)", name, u[0], ErrConflict)
	}
	return os.RemoveAll(filepath.Join(s.volumes, name))
}

// Size is the size of the volume's files.
func (v *Volume) Size() int64 { return layers.DirSize(v.Mountpoint) }

// Size is the size of what the container wrote: its writable layer.
func (c *Container) Size() int64 { return layers.DirSize(filepath.Join(c.Dir, "diff", "upper")) }
