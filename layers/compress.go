package layers

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// compressLayers gives an image whose manifest names uncompressed layers
// (imported, loaded or built here) gzip blobs of them and a manifest that
// names those, and makes that manifest the image's: registries and other
// tools expect compressed layers, and pushing the image again sends the same
// bytes, so its digest stays. Images already compressed, and images that
// came from a registry (RepoDigests: their manifest is the registry's, and a
// push must keep its digest) are returned as they are.
//
// undo puts the store back as it was (a push that failed changes nothing).
func (s *Store) compressLayers(img *Image) (_ *Image, undo func(), err error) {
	undo = func() {}
	if len(img.RepoDigests) > 0 {
		return img, undo, nil
	}
	var created []v1.Hash
	defer func() {
		if err != nil {
			for _, h := range created {
				os.Remove(s.blobPath(h))
			}
		}
	}()
	m, _, err := s.Manifest(img)
	if err != nil {
		return nil, undo, err
	}
	cf, _, err := s.Config(img.ID)
	if err != nil {
		return nil, undo, err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, undo, fmt.Errorf("image %s: its config lists %d layers, its manifest %d", img.ID, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	uncompressed := func(d v1.Descriptor) bool {
		return d.MediaType == types.OCIUncompressedLayer || d.MediaType == types.DockerUncompressedLayer
	}
	// compress says which layers get a new gzip blob.
	compress := func(i int, d v1.Descriptor) bool {
		return d.Digest == cf.RootFS.DiffIDs[i] && uncompressed(d) && !s.HasBlob(d.Digest)
	}
	need := false
	for i, d := range m.Layers {
		need = need || compress(i, d)
	}
	if !need {
		return img, undo, nil
	}
	unlock, err := s.writing()
	if err != nil {
		return nil, undo, err
	}
	defer unlock()
	gz := types.OCILayer
	if m.MediaType == types.DockerManifestSchema2 {
		gz = types.DockerLayer
	}
	for i, d := range m.Layers {
		if !compress(i, d) {
			continue
		}
		digest, size, err := s.putGzipBlob(cf.RootFS.DiffIDs[i])
		if err != nil {
			return nil, undo, err
		}
		created = append(created, digest)
		m.Layers[i] = v1.Descriptor{MediaType: gz, Size: size, Digest: digest}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, undo, err
	}
	hadManifest := s.HasBlob(sha256Of(mb))
	md, err := s.PutBlob(mb)
	if err != nil {
		return nil, undo, err
	}
	if !hadManifest {
		created = append(created, md)
	}
	unlockMeta, err := s.metaLock()
	if err != nil {
		return nil, undo, err
	}
	defer unlockMeta()
	rec, err := s.readRecord(img.ID)
	if err != nil {
		return nil, undo, err
	}
	old := *rec
	rec.Manifest = md
	if err := s.writeJSON(s.recordPath(img.ID), rec); err != nil {
		return nil, undo, fmt.Errorf("write image %s: %w", img.ID, err)
	}
	undo = func() {
		if unlock, err := s.metaLock(); err == nil {
			if cur, err := s.readRecord(img.ID); err == nil && cur.Manifest == md {
				cur.Manifest = old.Manifest
				s.writeJSON(s.recordPath(img.ID), cur)
			}
			unlock()
		}
		for _, h := range created {
			os.Remove(s.blobPath(h))
		}
	}
	out := *img
	out.Record = *rec
	return &out, undo, nil
}

// putGzipBlob stores the gzip compression of the layer with the given diff
// ID as a blob and returns its digest and size. The layer is verified as it
// is read.
func (s *Store) putGzipBlob(diffID v1.Hash) (v1.Hash, int64, error) {
	src, err := s.OpenLayer(diffID)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer src.Close()
	f, err := s.tempFile("blob-")
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("compress layer %s: %w", diffID, err)
	}
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	zw := gzip.NewWriter(bw)
	_, err = io.Copy(zw, src)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = closeSynced(f)
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(f.Name())
		return v1.Hash{}, 0, fmt.Errorf("compress layer %s: %w", diffID, err)
	}
	digest := hashOf(h)
	if err := os.Rename(f.Name(), s.blobPath(digest)); err != nil {
		os.Remove(f.Name())
		return v1.Hash{}, 0, fmt.Errorf("compress layer %s: %w", diffID, err)
	}
	return digest, cw.n, nil
}

// recompressed is a pulled image as a go-containerregistry image in which
// every layer whose compressed blob the store does not keep is compressed
// again with gzip as it is uploaded: what Docker does to push such an image
// to a registry that has not got the blob and cannot mount it. Such a
// layer's digest, and so the manifest's, is known once it has been read
// (go-containerregistry's streaming layers, stream.ErrNotComputed until
// then). The store is not changed.
func (s *Store) recompressed(img *Image) (*recompressedImage, error) {
	m, _, err := s.Manifest(img)
	if err != nil {
		return nil, err
	}
	cf, cb, err := s.Config(img.ID)
	if err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: its config lists %d layers, its manifest %d", img.ID, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	gz := types.OCILayer
	if m.MediaType == types.DockerManifestSchema2 {
		gz = types.DockerLayer
	}
	ri := &recompressedImage{m: m, config: cb, id: img.ID}
	for i, d := range m.Layers {
		diffID := cf.RootFS.DiffIDs[i]
		if d.Digest == diffID || s.HasBlob(d.Digest) {
			l, err := partial.CompressedToLayer(&storedLayer{s: s, desc: d, diffID: diffID})
			if err != nil {
				return nil, err
			}
			ri.layers = append(ri.layers, l)
			continue
		}
		ri.layers = append(ri.layers, &gzipStream{s: s, diffID: diffID, mt: gz})
	}
	return ri, nil
}

// recompressedImage is what recompressed returns: the stored image's config
// and manifest with some layers compressed as they are read.
type recompressedImage struct {
	m      *v1.Manifest // the stored one: media types, config, kept layers
	config []byte
	id     v1.Hash
	layers []v1.Layer
}

var _ v1.Image = (*recompressedImage)(nil)

func (ri *recompressedImage) Layers() ([]v1.Layer, error)         { return ri.layers, nil }
func (ri *recompressedImage) MediaType() (types.MediaType, error) { return ri.m.MediaType, nil }
func (ri *recompressedImage) ConfigName() (v1.Hash, error)        { return ri.id, nil }
func (ri *recompressedImage) RawConfigFile() ([]byte, error)      { return ri.config, nil }
func (ri *recompressedImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(ri.config))
}

// Manifest implements v1.Image; it fails with stream.ErrNotComputed until
// every layer compressed anew has been read.
func (ri *recompressedImage) Manifest() (*v1.Manifest, error) {
	m := *ri.m
	m.Layers = make([]v1.Descriptor, len(ri.layers))
	for i, l := range ri.layers {
		gs, ok := l.(*gzipStream)
		if !ok {
			m.Layers[i] = ri.m.Layers[i]
			continue
		}
		d, err := gs.Digest()
		if err != nil {
			return nil, err
		}
		size, _ := gs.Size()
		m.Layers[i] = v1.Descriptor{MediaType: gs.mt, Size: size, Digest: d}
	}
	return &m, nil
}

func (ri *recompressedImage) RawManifest() ([]byte, error) {
	m, err := ri.Manifest()
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func (ri *recompressedImage) Digest() (v1.Hash, error) {
	b, err := ri.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	return sha256Of(b), nil
}

func (ri *recompressedImage) Size() (int64, error) {
	b, err := ri.RawManifest()
	return int64(len(b)), err
}

func (ri *recompressedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range ri.layers {
		if d, err := l.Digest(); err == nil && d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in image %s: %w", h, ri.id, ErrNotFound)
}

func (ri *recompressedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for _, l := range ri.layers {
		if d, err := l.DiffID(); err == nil && d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in image %s: %w", h, ri.id, ErrNotFound)
}

// gzipStream is a stored layer compressed with gzip (level 1) as it is
// read; its digest and size are known once a reading has reached the end.
type gzipStream struct {
	s      *Store
	diffID v1.Hash
	mt     types.MediaType

	mu     sync.Mutex
	done   bool
	digest v1.Hash
	size   int64
}

var _ v1.Layer = (*gzipStream)(nil)

func (l *gzipStream) Digest() (v1.Hash, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		return v1.Hash{}, stream.ErrNotComputed
	}
	return l.digest, nil
}

func (l *gzipStream) Size() (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		return 0, stream.ErrNotComputed
	}
	return l.size, nil
}

func (l *gzipStream) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *gzipStream) MediaType() (types.MediaType, error)  { return l.mt, nil }
func (l *gzipStream) Uncompressed() (io.ReadCloser, error) { return l.s.OpenLayer(l.diffID) }

// Compressed implements v1.Layer: the layer, verified as it is read, is
// compressed in a goroutine as the upload reads it. gzip is deterministic,
// so a retried upload sends the same bytes.
func (l *gzipStream) Compressed() (io.ReadCloser, error) {
	src, err := l.s.OpenLayer(l.diffID)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer src.Close()
		h := sha256.New()
		cw := &countingWriter{w: io.MultiWriter(pw, h)}
		bw := bufio.NewWriterSize(cw, 1<<20)
		// The upload waits on this compression: the fastest level (about
		// three times the default's speed, a little larger output), as the
		// blob is not kept and each such push compresses again.
		zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		_, err = io.Copy(zw, src)
		if err == nil {
			err = zw.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			l.mu.Lock()
			l.done, l.digest, l.size = true, hashOf(h), cw.n
			l.mu.Unlock()
		} else {
			err = fmt.Errorf("compress layer %s: %w", l.diffID, err)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// aheadReader reads its source in a goroutine, a few large buffers ahead
// of its reader, so that the source (a decompressor) works while the reader
// (a layer being hashed, indexed and written) consumes what it produced.
type aheadReader struct {
	full chan aheadChunk
	free chan []byte
	stop chan struct{}
	done chan struct{}
	once sync.Once

	buf, cur []byte
	err      error
}

type aheadChunk struct {
	b   []byte
	err error
}

// readAhead starts reading r ahead. Close stops the goroutine and waits for
// it; it does not close r.
func readAhead(r io.Reader) *aheadReader {
	const n, size = 4, 1 << 20
	a := &aheadReader{full: make(chan aheadChunk, n), free: make(chan []byte, n), stop: make(chan struct{}), done: make(chan struct{})}
	for range n {
		a.free <- make([]byte, size)
	}
	go a.fill(r)
	return a
}

func (a *aheadReader) fill(r io.Reader) {
	defer close(a.done)
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.stop:
			return
		}
		n, err := io.ReadFull(r, b)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case a.full <- aheadChunk{b[:n], err}:
		case <-a.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read implements io.Reader.
func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)]
			a.buf = nil
		}
		c := <-a.full
		a.buf, a.cur, a.err = c.b, c.b, c.err
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops reading ahead. It waits for a read of the source in progress
// to return: whoever closes the source first must make it return.
func (a *aheadReader) Close() error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	return nil
}
