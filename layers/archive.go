package layers

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Archive formats accepted by Save.
const (
	DockerArchive = "docker-archive"
	OCIArchive    = "oci-archive"
)

// storedImage presents a stored image as a go-containerregistry image.
type storedImage struct {
	s        *Store
	img      *Image
	manifest []byte
	config   []byte
	m        *v1.Manifest
	diffIDs  []v1.Hash
}

var _ partial.CompressedImageCore = (*storedImage)(nil)

func (si *storedImage) RawConfigFile() ([]byte, error) { return si.config, nil }
func (si *storedImage) RawManifest() ([]byte, error)   { return si.manifest, nil }
func (si *storedImage) MediaType() (types.MediaType, error) {
	return si.m.MediaType, nil
}

func (si *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for i, d := range si.m.Layers {
		if d.Digest == h {
			return &storedLayer{s: si.s, desc: d, diffID: si.diffIDs[i]}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in image %s: %w", h, si.img.ID, ErrNotFound)
}

// storedLayer serves a manifest layer from a kept blob, or from the
// uncompressed layer when the manifest names it by its diff ID. A pulled
// layer's compressed blob is not kept: Compressed then fails with
// errBlobNotKept.
type storedLayer struct {
	s      *Store
	desc   v1.Descriptor
	diffID v1.Hash
}

var _ partial.CompressedLayer = (*storedLayer)(nil)

// errBlobNotKept says that the store has a layer only uncompressed, not as
// the compressed blob its manifest names.
var errBlobNotKept = errors.New("compressed blob not kept")

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *storedLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	if l.s.HasBlob(l.desc.Digest) {
		f, err := os.Open(l.s.blobPath(l.desc.Digest))
		if err != nil {
			return nil, err
		}
		return &verifyingReader{f: f, h: sha256.New(), want: l.desc.Digest, what: "blob"}, nil
	}
	if l.desc.Digest != l.diffID {
		return nil, fmt.Errorf("layer %s: %w", l.desc.Digest, errBlobNotKept)
	}
	return l.s.OpenLayer(l.diffID)
}

// V1Image returns the stored image as a go-containerregistry image, with
// the manifest as stored: the registry's, for a pulled image, whose layers'
// compressed blobs the store does not keep (see storedLayer).
func (s *Store) V1Image(img *Image) (v1.Image, error) {
	m, mb, err := s.Manifest(img)
	if err != nil {
		return nil, err
	}
	return s.v1Image(img, m, mb)
}

func (s *Store) v1Image(img *Image, m *v1.Manifest, mb []byte) (v1.Image, error) {
	cf, cb, err := s.Config(img.ID)
	if err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: its config lists %d layers, its manifest %d", img.ID, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	return partial.CompressedToImage(&storedImage{s: s, img: img, manifest: mb, config: cb, m: m, diffIDs: cf.RootFS.DiffIDs})
}

// portableManifest is the image's manifest with every layer whose
// compressed blob the store does not keep named by its uncompressed layer
// instead, as docker save writes them: a manifest all of whose layers the
// store can serve.
func (s *Store) portableManifest(img *Image) (*v1.Manifest, []byte, error) {
	m, mb, err := s.Manifest(img)
	if err != nil {
		return nil, nil, err
	}
	cf, _, err := s.Config(img.ID)
	if err != nil {
		return nil, nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, nil, fmt.Errorf("image %s: its config lists %d layers, its manifest %d", img.ID, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	changed := false
	for i, d := range m.Layers {
		diffID := cf.RootFS.DiffIDs[i]
		if d.Digest == diffID || s.HasBlob(d.Digest) {
			continue
		}
		size, err := s.LayerSize(diffID)
		if err != nil {
			return nil, nil, err
		}
		mt := types.OCIUncompressedLayer
		if m.MediaType == types.DockerManifestSchema2 {
			mt = types.DockerUncompressedLayer
		}
		m.Layers[i] = v1.Descriptor{MediaType: mt, Size: size, Digest: diffID}
		changed = true
	}
	if changed {
		if mb, err = json.Marshal(m); err != nil {
			return nil, nil, err
		}
	}
	return m, mb, nil
}

// portableImage is V1Image with the portable manifest.
func (s *Store) portableImage(img *Image) (v1.Image, error) {
	m, mb, err := s.portableManifest(img)
	if err != nil {
		return nil, err
	}
	return s.v1Image(img, m, mb)
}

// SaveOptions says what Save writes.
type SaveOptions struct {
	// Refs are the images to save, as references or IDs.
	Refs []string
	// Format is DockerArchive (the default) or OCIArchive.
	Format string
}

// Save writes the images as one archive to w.
func (s *Store) Save(w io.Writer, o SaveOptions) error {
	var entries []saveEntry
	for _, r := range o.Refs {
		img, err := s.Resolve(r)
		if err != nil {
			return err
		}
		vi, err := s.portableImage(img)
		if err != nil {
			return err
		}
		e := saveEntry{img: img, v1: vi}
		if ref, err := ParseReference(r); err == nil {
			if t, ok := ref.(name.Tag); ok && contains(img.Tags, Normalized(t)) {
				e.tags = []name.Tag{t}
			}
		}
		if e.tags == nil && !strings.HasPrefix(img.ID.Hex, strings.TrimPrefix(r, "sha256:")) {
			return fmt.Errorf("save %s: only tags and image IDs can be saved", r)
		}
		entries = append(entries, e)
	}
	switch o.Format {
	case "", DockerArchive:
		refs := map[name.Reference]v1.Image{}
		for _, e := range entries {
			for _, t := range e.tags {
				refs[t] = e.v1
			}
			if len(e.tags) == 0 {
				d, _ := name.NewDigest("sha256-untagged/image@" + e.img.ID.String())
				refs[d] = e.v1
			}
		}
		return tarball.MultiRefWrite(refs, w)
	case OCIArchive:
		return s.writeOCIArchive(w, entries)
	}
	return fmt.Errorf("unknown archive format %q: use docker-archive or oci-archive", o.Format)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// saveEntry is one image Save writes, with the tags it is saved under.
type saveEntry struct {
	img  *Image
	v1   v1.Image
	tags []name.Tag
}

// writeOCIArchive writes an OCI image layout as a tar stream.
func (s *Store) writeOCIArchive(w io.Writer, entries []saveEntry) error {
	tw := tar.NewWriter(w)
	put := func(name string, r io.Reader, size int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	putBytes := func(name string, b []byte) error { return put(name, bytes.NewReader(b), int64(len(b))) }
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if err := putBytes("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	written := map[v1.Hash]bool{}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, e := range entries {
		m, mb, err := s.portableManifest(e.img)
		if err != nil {
			return err
		}
		cf, cb, err := s.Config(e.img.ID)
		if err != nil {
			return err
		}
		md := sha256Of(mb)
		for _, blob := range []struct {
			h v1.Hash
			b []byte
		}{{e.img.ID, cb}, {md, mb}} {
			if !written[blob.h] {
				if err := putBytes("blobs/sha256/"+blob.h.Hex, blob.b); err != nil {
					return err
				}
				written[blob.h] = true
			}
		}
		for i, d := range m.Layers {
			if written[d.Digest] {
				continue
			}
			rc, err := (&storedLayer{s: s, desc: d, diffID: cf.RootFS.DiffIDs[i]}).Compressed()
			if err != nil {
				return err
			}
			err = put("blobs/sha256/"+d.Digest.Hex, rc, d.Size)
			rc.Close()
			if err != nil {
				return err
			}
			written[d.Digest] = true
		}
		desc := v1.Descriptor{MediaType: m.MediaType, Size: int64(len(mb)), Digest: md}
		if len(e.tags) == 0 {
			index.Manifests = append(index.Manifests, desc)
		}
		for _, t := range e.tags {
			d := desc
			d.Annotations = map[string]string{
				"io.containerd.image.name":          Normalized(t),
				"org.opencontainers.image.ref.name": Normalized(t),
			}
			index.Manifests = append(index.Manifests, d)
		}
	}
	ib, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := putBytes("index.json", ib); err != nil {
		return err
	}
	return tw.Close()
}

// SaveFile writes the archive to path atomically: on failure the path is untouched.
func (s *Store) SaveFile(p string, o SaveOptions) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-")
	if err != nil {
		return fmt.Errorf("save to %s: %w", p, unwrapPathError(err))
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = s.Save(bw, o)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save to %s: %w", p, err)
	}
	return nil
}

// Loaded is one image that Load stored.
type Loaded struct {
	ID   v1.Hash
	Tags []name.Tag
}

// archiveLayer is a layer read from an archive while streaming it.
type archiveLayer struct {
	raw, diffID v1.Hash
}

// Load reads a docker-archive (docker save, podman save) or an OCI archive
// (an OCI image layout as a tar) from r and stores its images. The archive is
// read once, front to back; layers go straight into the store. On error no
// image is added.
func (s *Store) Load(r io.Reader) (loaded []Loaded, err error) {
	unlock, err := s.writing()
	if err != nil {
		return nil, err
	}
	defer func() {
		unlock()
		if err != nil {
			s.collect(false)
		}
	}()
	r, err = Decompress(r)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	small := map[string][]byte{}
	big := map[string]archiveLayer{}
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	var lastEnd int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if err := checkTrailer(cr.n, lastEnd); err != nil {
				return nil, fmt.Errorf("load: %w", err)
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load: %w", tarError(err))
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			lastEnd = (cr.n + 511) &^ 511
			continue
		}
		p := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if hdr.Size <= 4<<20 {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("load: %w", tarError(err))
			}
			small[p] = b
			lastEnd = (cr.n + 511) &^ 511
			continue
		}
		l, err := s.ingest(tr)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", p, err)
		}
		big[p] = l
		lastEnd = (cr.n + 511) &^ 511
	}
	layerAt := func(p string) (archiveLayer, error) {
		if l, ok := big[p]; ok {
			return l, nil
		}
		b, ok := small[p]
		if !ok {
			return archiveLayer{}, fmt.Errorf("archive lacks layer %s", p)
		}
		l, err := s.ingest(bytes.NewReader(b))
		if err != nil {
			return archiveLayer{}, fmt.Errorf("load %s: %w", p, err)
		}
		big[p] = l
		return l, nil
	}
	type pending struct {
		config []byte
		layers []archiveLayer
		tags   []name.Tag
	}
	var images []pending
	switch {
	case small["manifest.json"] != nil:
		var mf tarball.Manifest
		if err := json.Unmarshal(small["manifest.json"], &mf); err != nil {
			return nil, fmt.Errorf("load: parse manifest.json: %w", err)
		}
		for _, d := range mf {
			cb, ok := small[path.Clean(d.Config)]
			if !ok {
				return nil, fmt.Errorf("load: archive lacks config %s", d.Config)
			}
			p := pending{config: cb}
			for _, lp := range d.Layers {
				l, err := layerAt(path.Clean(lp))
				if err != nil {
					return nil, fmt.Errorf("load: %w", err)
				}
				p.layers = append(p.layers, l)
			}
			for _, t := range d.RepoTags {
				tag, err := ParseTag(t)
				if err != nil {
					return nil, fmt.Errorf("load: %w", err)
				}
				p.tags = append(p.tags, tag)
			}
			images = append(images, p)
		}
	case small["index.json"] != nil:
		blob := func(h v1.Hash) ([]byte, error) {
			b, ok := small["blobs/"+h.Algorithm+"/"+h.Hex]
			if !ok {
				return nil, fmt.Errorf("archive lacks blob %s", h)
			}
			if sum := sha256.Sum256(b); fmt.Sprintf("%x", sum) != h.Hex {
				return nil, fmt.Errorf("blob %s: %w", h, ErrCorrupt)
			}
			return b, nil
		}
		var walk func(ib []byte, tags []name.Tag) error
		walk = func(ib []byte, tags []name.Tag) error {
			im, err := v1.ParseIndexManifest(bytes.NewReader(ib))
			if err != nil {
				return fmt.Errorf("parse index: %w", err)
			}
			for _, d := range im.Manifests {
				t := tags
				if tag, ok := ociTag(d.Annotations); ok {
					t = append(append([]name.Tag(nil), tags...), tag)
				}
				if d.Platform != nil && (d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH) {
					continue
				}
				b, err := blob(d.Digest)
				if err != nil {
					return err
				}
				if d.MediaType.IsIndex() {
					if err := walk(b, t); err != nil {
						return err
					}
					continue
				}
				m, err := v1.ParseManifest(bytes.NewReader(b))
				if err != nil {
					return fmt.Errorf("parse manifest %s: %w", d.Digest, err)
				}
				cb, err := blob(m.Config.Digest)
				if err != nil {
					return err
				}
				p := pending{config: cb, tags: t}
				for _, ld := range m.Layers {
					l, err := layerAt("blobs/" + ld.Digest.Algorithm + "/" + ld.Digest.Hex)
					if err != nil {
						return err
					}
					if l.raw != ld.Digest {
						return fmt.Errorf("layer blob %s: %w (it hashes to %s)", ld.Digest, ErrCorrupt, l.raw)
					}
					p.layers = append(p.layers, l)
				}
				images = append(images, p)
			}
			return nil
		}
		if err := walk(small["index.json"], nil); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
	default:
		return nil, errors.New("load: not an image archive: it has neither manifest.json (docker-archive) nor index.json (OCI layout)")
	}
	if len(images) == 0 {
		return nil, errors.New("load: the archive holds no image for " + "linux/" + runtime.GOARCH)
	}
	for _, p := range images {
		cf, err := v1.ParseConfigFile(bytes.NewReader(p.config))
		if err != nil {
			return nil, fmt.Errorf("load: parse image config: %w", err)
		}
		if len(cf.RootFS.DiffIDs) != len(p.layers) {
			return nil, fmt.Errorf("load: image config lists %d layers, the archive has %d", len(cf.RootFS.DiffIDs), len(p.layers))
		}
		for i, l := range p.layers {
			if cf.RootFS.DiffIDs[i] != l.diffID {
				return nil, fmt.Errorf("load: layer %d: %w: config says %s, content is %s", i, ErrCorrupt, cf.RootFS.DiffIDs[i], l.diffID)
			}
		}
	}
	for _, p := range images {
		lrs := make([]LayerRef, len(p.layers))
		for i, l := range p.layers {
			lrs[i] = LayerRef{DiffID: l.diffID}
		}
		id, err := s.AddImage(p.config, lrs, p.tags)
		if err != nil {
			return loaded, err
		}
		loaded = append(loaded, Loaded{ID: id, Tags: p.tags})
	}
	return loaded, nil
}

// ociTag reads the image name an OCI index entry carries, if it is a full reference.
func ociTag(ann map[string]string) (name.Tag, bool) {
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		v := ann[k]
		if v == "" || !strings.ContainsAny(v, ":/") {
			continue
		}
		if t, err := ParseTag(v); err == nil {
			return t, true
		}
	}
	return name.Tag{}, false
}

// ingest stores a possibly compressed layer read from r and returns the
// digest of the bytes as read and the layer's diff ID.
func (s *Store) ingest(r io.Reader) (archiveLayer, error) {
	h := sha256.New()
	tee := io.TeeReader(r, h)
	dr, err := Decompress(tee)
	if err != nil {
		return archiveLayer{}, err
	}
	diffID, _, err := s.PutLayer(dr)
	if err != nil {
		return archiveLayer{}, err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return archiveLayer{}, err
	}
	return archiveLayer{raw: hashOf(h), diffID: diffID}, nil
}
