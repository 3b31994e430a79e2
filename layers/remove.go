package layers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// ErrConflict is returned (wrapped) when removing an image needs force.
var ErrConflict = errors.New("conflict")

// RemoveResult says what a removal did, in Docker's terms.
type RemoveResult struct {
	Untagged []string
	Deleted  []v1.Hash
}

// Remove removes a tag, or an image with all its tags. A reference that names
// a tag only untags it, and the image goes when its last tag does. An image ID
// of an image with several tags needs force. Layers and blobs that no image
// references any more are deleted unless a writer is busy (then the next
// prune deletes them).
func (s *Store) Remove(ref string, force bool) (*RemoveResult, error) {
	res, err := s.remove(ref, force)
	if err != nil {
		return nil, err
	}
	if len(res.Deleted) > 0 {
		if _, err := s.collect(false); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (s *Store) remove(ref string, force bool) (*RemoveResult, error) {
	unlock, err := s.metaLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	img, err := s.resolve(ref)
	if err != nil {
		return nil, err
	}
	tf, err := s.readTags()
	if err != nil {
		return nil, err
	}
	res := &RemoveResult{}
	byTag := false
	if r, perr := ParseReference(ref); perr == nil {
		full := Normalized(r)
		if _, ok := tf.Tags[full]; ok && tf.Tags[full] == img.ID {
			delete(tf.Tags, full)
			res.Untagged = append(res.Untagged, full)
			byTag = true
		}
	}
	if !byTag {
		if len(img.Tags) > 1 && !force {
			return nil, fmt.Errorf("unable to delete %s: image is referenced in multiple repositories (%w): remove it by name or use -f", img.ID.Hex[:12], ErrConflict)
		}
		for _, t := range img.Tags {
			delete(tf.Tags, t)
			res.Untagged = append(res.Untagged, t)
		}
	}
	remaining := 0
	for _, id := range tf.Tags {
		if id == img.ID {
			remaining++
		}
	}
	var users []string
	if s.InUse != nil {
		users = s.InUse(img.ID)
	}
	if remaining == 0 && len(users) > 0 {
		if !force {
			return nil, fmt.Errorf("unable to remove %s: container %s is using it (%w): remove the container first or use -f", ref, users[0][:min(12, len(users[0]))], ErrConflict)
		}
		remaining = 1 // untag only: the container keeps the image
	}
	if len(res.Untagged) > 0 {
		if err := s.writeTags(tf); err != nil {
			return nil, err
		}
	}
	if remaining == 0 {
		if err := os.Remove(s.recordPath(img.ID)); err != nil {
			return nil, fmt.Errorf("remove image %s: %w", img.ID, err)
		}
		res.Deleted = append(res.Deleted, img.ID)
	}
	return res, nil
}

// PruneResult says what a prune removed.
type PruneResult struct {
	Deleted   []v1.Hash
	Reclaimed int64
}

// Prune removes dangling images (those without tags), or with all every
// image, then every layer, blob and temp file nothing references, and the
// downloads kept for resuming an interrupted pull. It waits
// for writers in progress to finish.
func (s *Store) Prune(all bool) (*PruneResult, error) {
	res := &PruneResult{}
	unlock, err := s.metaLock()
	if err != nil {
		return nil, err
	}
	imgs, err := s.images()
	if err != nil {
		unlock()
		return nil, err
	}
	tf, err := s.readTags()
	if err != nil {
		unlock()
		return nil, err
	}
	changed := false
	for _, img := range imgs {
		if len(img.Tags) > 0 && !all || s.InUse != nil && len(s.InUse(img.ID)) > 0 {
			continue
		}
		for _, t := range img.Tags {
			delete(tf.Tags, t)
			changed = true
		}
		if err := os.Remove(s.recordPath(img.ID)); err != nil {
			unlock()
			return nil, fmt.Errorf("remove image %s: %w", img.ID, err)
		}
		res.Deleted = append(res.Deleted, img.ID)
	}
	if changed {
		if err := s.writeTags(tf); err != nil {
			unlock()
			return nil, err
		}
	}
	unlock()
	n, err := s.collect(true)
	res.Reclaimed = n
	return res, err
}

// collect deletes layers and blobs that no image record references, and
// leftover temp files. With wait it waits for writers, and deletes the
// downloads kept for resuming too; otherwise it does nothing while a writer
// holds the store.
func (s *Store) collect(wait bool) (int64, error) {
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	unlockGC, err := s.lock("gc.lock", how)
	if err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return 0, nil
		}
		return 0, err
	}
	defer unlockGC()
	unlock, err := s.metaRLock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	imgs, err := s.images()
	if err != nil {
		return 0, err
	}
	blobs := map[string]bool{}
	layers := s.cacheLayers()
	views := map[string]bool{}
	for _, img := range imgs {
		blobs[img.ID.Hex] = true
		blobs[img.Manifest.Hex] = true
		// Read without verifying: a corrupt blob must not stop collection of others.
		if m, err := s.rawManifest(img.Manifest); err == nil {
			for _, l := range m.Layers {
				blobs[l.Digest.Hex] = true
				layers[l.Digest.Hex] = true
			}
		}
		if cf, err := s.rawConfig(img.ID); err == nil {
			for _, d := range cf.RootFS.DiffIDs {
				layers[d.Hex] = true
			}
			views[chainName(cf.RootFS.DiffIDs)] = true
		}
	}
	var freed int64
	sweep := func(dir string, keep map[string]bool) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("collect garbage: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if keep[e.Name()] || e.IsDir() && scratchInUse(p) {
				continue
			}
			freed += DirSize(p)
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("collect garbage: %w", err)
			}
		}
		return nil
	}
	if err := sweep(filepath.Join(s.root, "blobs", "sha256"), blobs); err != nil {
		return freed, err
	}
	if err := sweep(filepath.Join(s.root, "layers"), layers); err != nil {
		return freed, err
	}
	// Merged views are a cache of starts: those of no image go.
	if _, err := os.Stat(filepath.Join(s.root, mergedDir)); err == nil {
		if err := sweep(filepath.Join(s.root, mergedDir), views); err != nil {
			return freed, err
		}
	}
	// Kept downloads stay for the next pull to continue, until a prune.
	partials := map[string]bool{}
	if !wait {
		ents, _ := os.ReadDir(filepath.Join(s.root, "tmp"))
		for _, e := range ents {
			if isPartial(e.Name()) {
				partials[e.Name()] = true
			}
		}
	}
	if err := sweep(filepath.Join(s.root, "tmp"), partials); err != nil {
		return freed, err
	}
	ents, _ := os.ReadDir(filepath.Join(s.root, "images"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.Remove(filepath.Join(s.root, "images", e.Name()))
		}
	}
	return freed, nil
}

func (s *Store) rawManifest(h v1.Hash) (*v1.Manifest, error) {
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return v1.ParseManifest(f)
}

func (s *Store) rawConfig(h v1.Hash) (*v1.ConfigFile, error) {
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return v1.ParseConfigFile(f)
}

// DirSize is the size of the files under p, in bytes.
func DirSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// DiskUsage is the space the store's layers and blobs take.
func (s *Store) DiskUsage() (int64, error) {
	return DirSize(filepath.Join(s.root, "layers")) + DirSize(filepath.Join(s.root, "blobs")), nil
}
