package layers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Record is what the store keeps about one image besides its blobs.
type Record struct {
	// ID is the digest of the image's config: Docker's image ID.
	ID v1.Hash `json:"id"`
	// Manifest is the digest of the stored manifest blob.
	Manifest v1.Hash `json:"manifest"`
	// Size is the sum of the image's uncompressed layer sizes.
	Size int64 `json:"size"`
	// Created is the image config's creation time.
	Created time.Time `json:"created"`
	// RepoDigests are registry digests the image is known by (repo@sha256:...).
	RepoDigests []string `json:"repoDigests,omitempty"`
	// Added is when the record was written; LastTag when a tag last changed.
	Added   time.Time `json:"added"`
	LastTag time.Time `json:"lastTag,omitempty"`
}

// Image is a stored image with its tags.
type Image struct {
	Record
	// Tags are the normalized references that point at the image, sorted.
	Tags []string
}

// tagFile is images/repositories.json.
type tagFile struct {
	Tags map[string]v1.Hash `json:"tags"`
}

func (s *Store) recordPath(id v1.Hash) string {
	return filepath.Join(s.root, "images", id.Hex+".json")
}

func (s *Store) metaLock() (func(), error) { return s.lock("meta.lock", unix.LOCK_EX) }

func (s *Store) metaRLock() (func(), error) { return s.lock("meta.lock", unix.LOCK_SH) }

func (s *Store) readTags() (*tagFile, error) {
	tf := &tagFile{Tags: map[string]v1.Hash{}}
	b, err := os.ReadFile(filepath.Join(s.root, "images", "repositories.json"))
	if errors.Is(err, os.ErrNotExist) {
		return tf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tags: %w", err)
	}
	if err := json.Unmarshal(b, tf); err != nil {
		return nil, fmt.Errorf("read tags %s: %w", filepath.Join(s.root, "images", "repositories.json"), err)
	}
	if tf.Tags == nil {
		tf.Tags = map[string]v1.Hash{}
	}
	return tf, nil
}

// writeJSON writes v to p atomically (temp, fsync, rename).
func (s *Store) writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	if err := writeAll(f, b); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

func (s *Store) writeTags(tf *tagFile) error {
	if err := s.writeJSON(filepath.Join(s.root, "images", "repositories.json"), tf); err != nil {
		return fmt.Errorf("write tags: %w", err)
	}
	return nil
}

func (s *Store) readRecord(id v1.Hash) (*Record, error) {
	b, err := os.ReadFile(s.recordPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read image %s: %w", id, err)
	}
	return &r, nil
}

// LayerRef describes one layer of a new image.
type LayerRef struct {
	// DiffID names the stored uncompressed layer.
	DiffID v1.Hash
	// Blob, when set, is a stored compressed blob of the layer with its media
	// type; otherwise the manifest points at the uncompressed tar.
	Blob      *v1.Descriptor
	MediaType types.MediaType
}

// AddImage stores an image made of config (its raw JSON) and layers that are
// already in the store, and points tags at it. It returns the image ID.
// Idempotent: adding the same config again only moves the tags.
func (s *Store) AddImage(config []byte, lrs []LayerRef, tags []name.Tag) (v1.Hash, error) {
	cf, err := v1.ParseConfigFile(strings.NewReader(string(config)))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parse image config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(lrs) {
		return v1.Hash{}, fmt.Errorf("image config lists %d layers, have %d", len(cf.RootFS.DiffIDs), len(lrs))
	}
	id, err := s.PutBlob(config)
	if err != nil {
		return v1.Hash{}, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(config)), Digest: id},
	}
	var total int64
	for i, l := range lrs {
		if l.DiffID != cf.RootFS.DiffIDs[i] {
			return v1.Hash{}, fmt.Errorf("layer %d is %s, config says %s", i, l.DiffID, cf.RootFS.DiffIDs[i])
		}
		size, err := s.LayerSize(l.DiffID)
		if err != nil {
			return v1.Hash{}, err
		}
		total += size
		if l.Blob != nil {
			m.Layers = append(m.Layers, *l.Blob)
			continue
		}
		mt := l.MediaType
		if mt == "" {
			mt = types.OCIUncompressedLayer
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mt, Size: size, Digest: l.DiffID})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return v1.Hash{}, err
	}
	md, err := s.PutBlob(mb)
	if err != nil {
		return v1.Hash{}, err
	}
	unlock, err := s.metaLock()
	if err != nil {
		return v1.Hash{}, err
	}
	defer unlock()
	now := time.Now().UTC()
	rec, err := s.readRecord(id)
	if errors.Is(err, ErrNotFound) {
		rec = &Record{ID: id, Manifest: md, Size: total, Created: cf.Created.Time, Added: now}
	} else if err != nil {
		return v1.Hash{}, err
	}
	if len(tags) > 0 {
		rec.LastTag = now
	}
	if err := s.writeJSON(s.recordPath(id), rec); err != nil {
		return v1.Hash{}, fmt.Errorf("write image %s: %w", id, err)
	}
	if len(tags) > 0 {
		tf, err := s.readTags()
		if err != nil {
			return v1.Hash{}, err
		}
		for _, t := range tags {
			tf.Tags[Normalized(t)] = id
		}
		if err := s.writeTags(tf); err != nil {
			return v1.Hash{}, err
		}
	}
	return id, nil
}

// Images lists every stored image, newest first.
func (s *Store) Images() ([]*Image, error) {
	unlock, err := s.metaRLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.images()
}

func (s *Store) images() ([]*Image, error) {
	tf, err := s.readTags()
	if err != nil {
		return nil, err
	}
	byID := map[v1.Hash][]string{}
	for t, id := range tf.Tags {
		byID[id] = append(byID[id], t)
	}
	ents, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []*Image
	for _, e := range ents {
		hex, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || len(hex) != 64 {
			continue
		}
		rec, err := s.readRecord(v1.Hash{Algorithm: "sha256", Hex: hex})
		if err != nil {
			return nil, err
		}
		tags := byID[rec.ID]
		sort.Strings(tags)
		out = append(out, &Image{Record: *rec, Tags: tags})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID.Hex < out[j].ID.Hex
	})
	return out, nil
}

// Resolve finds an image by reference (busybox, busybox:1, repo@sha256:...) or
// by full or abbreviated image ID. The error wraps ErrNotFound when there is none.
func (s *Store) Resolve(ref string) (*Image, error) {
	unlock, err := s.metaRLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.resolve(ref)
}

func (s *Store) resolve(ref string) (*Image, error) {
	imgs, err := s.images()
	if err != nil {
		return nil, err
	}
	if r, perr := ParseReference(ref); perr == nil {
		full := Normalized(r)
		for _, img := range imgs {
			for _, t := range img.Tags {
				if t == full {
					return img, nil
				}
			}
			for _, d := range img.RepoDigests {
				if d == full {
					return img, nil
				}
			}
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if isHexPrefix(hex) {
		var found *Image
		for _, img := range imgs {
			if strings.HasPrefix(img.ID.Hex, hex) {
				if found != nil {
					return nil, fmt.Errorf("image ID prefix %q is ambiguous: give more characters", ref)
				}
				found = img
			}
		}
		if found != nil {
			return found, nil
		}
	}
	if _, perr := ParseReference(ref); perr != nil && !isHexPrefix(hex) {
		return nil, perr
	}
	return nil, &notFound{what: "image", name: ref}
}

func isHexPrefix(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Tag points target at the image that source resolves to.
func (s *Store) Tag(source string, target name.Tag) error {
	unlock, err := s.metaLock()
	if err != nil {
		return err
	}
	defer unlock()
	img, err := s.resolve(source)
	if err != nil {
		return err
	}
	tf, err := s.readTags()
	if err != nil {
		return err
	}
	tf.Tags[Normalized(target)] = img.ID
	if err := s.writeTags(tf); err != nil {
		return err
	}
	img.LastTag = time.Now().UTC()
	return s.writeJSON(s.recordPath(img.ID), &img.Record)
}

// Config returns the image's parsed config and its raw bytes, verified.
func (s *Store) Config(id v1.Hash) (*v1.ConfigFile, []byte, error) {
	b, err := s.Blob(id)
	if err != nil {
		return nil, nil, err
	}
	cf, err := v1.ParseConfigFile(strings.NewReader(string(b)))
	if err != nil {
		return nil, nil, fmt.Errorf("parse config %s: %w", id, err)
	}
	return cf, b, nil
}

// Manifest returns the image's stored manifest and its raw bytes, verified.
func (s *Store) Manifest(img *Image) (*v1.Manifest, []byte, error) {
	b, err := s.Blob(img.Manifest)
	if err != nil {
		return nil, nil, err
	}
	m, err := v1.ParseManifest(strings.NewReader(string(b)))
	if err != nil {
		return nil, nil, fmt.Errorf("parse manifest %s: %w", img.Manifest, err)
	}
	return m, b, nil
}

// ImageLayers returns the diff IDs of the image's layers, lowest first.
func (s *Store) ImageLayers(img *Image) ([]v1.Hash, error) {
	cf, _, err := s.Config(img.ID)
	if err != nil {
		return nil, err
	}
	return cf.RootFS.DiffIDs, nil
}
