package layers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned (wrapped) when an image, layer or blob is not in the store.
var ErrNotFound = errors.New("not found")

// notFound says what was missing; it matches ErrNotFound.
type notFound struct{ what, name string }

func (e *notFound) Error() string        { return "no such " + e.what + ": " + e.name }
func (e *notFound) Is(target error) bool { return target == ErrNotFound }

// ErrCorrupt is returned (wrapped) when stored content does not match its digest.
var ErrCorrupt = errors.New("content does not match its digest")

// Store is an on-disk image store rooted at one directory. Its methods are safe
// to call from many processes at once.
type Store struct {
	root string
	// InUse, when set, names the containers that use an image; images in
	// use are removed only with force, and then only untagged.
	InUse func(id v1.Hash) []string
	// Reserve is the room kept free on the store's filesystem: layers
	// that would eat into it are refused while they stream in.
	Reserve Reserve
}

// Open returns the store at root, creating its directories when missing.
func Open(root string) (*Store, error) {
	for _, d := range []string{"blobs/sha256", "layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	return &Store{root: root}, nil
}

// Root is the directory the store lives in.
func (s *Store) Root() string { return s.root }

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.root, "blobs", h.Algorithm, h.Hex)
}

// LayerDir is the directory of the layer with the given diff ID.
func (s *Store) LayerDir(diffID v1.Hash) string {
	return filepath.Join(s.root, "layers", diffID.Hex)
}

// LayerTar is the path of the layer's uncompressed tar.
func (s *Store) LayerTar(diffID v1.Hash) string {
	return filepath.Join(s.LayerDir(diffID), "layer.tar")
}

// LayerIndex is the path of the layer's index.
func (s *Store) LayerIndex(diffID v1.Hash) string { return filepath.Join(s.LayerDir(diffID), "index") }

// MergedView is the file of the merged view of the layers diffIDs, bottom
// first (package fuse writes it at a container's first start): named by
// the sha256 of their diff IDs, one per line.
func (s *Store) MergedView(diffIDs []v1.Hash) string {
	return filepath.Join(s.root, mergedDir, chainName(diffIDs))
}

// mergedDir holds the merged views; prune removes those of no image.
const mergedDir = "merged"

func chainName(diffIDs []v1.Hash) string {
	h := sha256.New()
	for _, d := range diffIDs {
		h.Write([]byte(d.String() + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lock takes an flock on the named lock file; the returned func releases it.
func (s *Store) lock(name string, how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock store: %w", os.NewSyscallError("flock", err))
	}
	return func() { f.Close() }, nil
}

// writing marks the caller as a writer for prune's sake: held shared while
// content that is not yet referenced exists.
func (s *Store) writing() (func(), error) { return s.lock("gc.lock", unix.LOCK_SH) }

// Writing marks the caller as a writer until the returned func is called:
// garbage collection leaves layers and blobs alone meanwhile. Hold it from
// before PutLayer until AddImage or PutCache references the layer.
func (s *Store) Writing() (func(), error) { return s.writing() }

// tempFile creates a temp file under tmp/.
func (s *Store) tempFile(pattern string) (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.root, "tmp"), pattern)
}

// MkdirTemp creates a scratch directory under tmp/ for work that outlives no
// process (such as the writable layer of `image mount`), and holds a lock in
// it until release is called or the process dies. Prune removes scratch
// directories whose lock nobody holds.
func (s *Store) MkdirTemp(pattern string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(filepath.Join(s.root, "tmp"), pattern)
	if err != nil {
		return "", nil, fmt.Errorf("create scratch directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, scratchLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("lock scratch directory: %w", err)
	}
	return dir, func() {
		os.RemoveAll(dir)
		f.Close()
	}, nil
}

const scratchLock = ".roost-scratch.lock"

// scratchInUse reports whether p is a scratch directory whose owner is alive.
func scratchInUse(p string) bool {
	f, err := os.Open(filepath.Join(p, scratchLock))
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}

// HasBlob reports whether the blob is stored.
func (s *Store) HasBlob(h v1.Hash) bool {
	_, err := os.Stat(s.blobPath(h))
	return err == nil
}

// PutBlob stores b under its sha256 and returns the digest. Idempotent.
func (s *Store) PutBlob(b []byte) (v1.Hash, error) {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if s.HasBlob(h) {
		return h, nil
	}
	f, err := s.tempFile("blob-")
	if err != nil {
		return h, fmt.Errorf("store blob %s: %w", h, err)
	}
	if err := writeAll(f, b); err != nil {
		return h, fmt.Errorf("store blob %s: %w", h, err)
	}
	if err := os.Rename(f.Name(), s.blobPath(h)); err != nil {
		os.Remove(f.Name())
		return h, fmt.Errorf("store blob %s: %w", h, err)
	}
	return h, nil
}

// writeAll writes b to f, syncs and closes it; on failure it removes f.
func writeAll(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Blob reads a stored blob and verifies its digest.
func (s *Store) Blob(h v1.Hash) ([]byte, error) {
	if h.Algorithm != "sha256" {
		return nil, fmt.Errorf("read blob %s: unsupported digest algorithm", h)
	}
	b, err := os.ReadFile(s.blobPath(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read blob %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != h.Hex {
		return nil, fmt.Errorf("blob %s: %w: remove the image that uses it and import or pull it again", h, ErrCorrupt)
	}
	return b, nil
}

// HasLayer reports whether the layer with this diff ID is stored.
func (s *Store) HasLayer(diffID v1.Hash) bool {
	_, err := os.Stat(s.LayerIndex(diffID))
	return err == nil
}

// PutLayer stores the uncompressed layer tar read from r, checks that every
// entry stays inside the layer root, and returns its diff ID and size.
// Idempotent: a layer already stored is kept and the new copy dropped.
// The caller must hold the writer lock (see writing).
func (s *Store) PutLayer(r io.Reader) (v1.Hash, int64, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("store layer: %w", err)
	}
	defer os.RemoveAll(dir)
	f, direct, err := createLayerFile(filepath.Join(dir, "layer.tar"))
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("store layer: %w", err)
	}
	h := sha256.New()
	// Tar headers and small files arrive in small reads: batch the writes.
	guard := &spaceGuard{w: f, dir: dir, reserve: s.Reserve}
	bw := newBlockWriter(f, guard, direct)
	cw := &countingWriter{w: io.MultiWriter(bw, h)}
	idx, err := indexTar(io.TeeReader(r, cw))
	if cerr := bw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		f.Close()
		if guard.err != nil {
			return v1.Hash{}, 0, fmt.Errorf("store layer: %w", guard.err)
		}
		if errors.Is(err, unix.ENOSPC) {
			return v1.Hash{}, 0, fmt.Errorf("store layer: %w", unix.ENOSPC)
		}
		return v1.Hash{}, 0, err
	}
	if err := closeSynced(f); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("store layer: %w", err)
	}
	diffID := hashOf(h)
	ix, err := os.Create(filepath.Join(dir, "index"))
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("store layer %s: %w", diffID, err)
	}
	if err := WriteIndex(ix, idx); err != nil {
		ix.Close()
		return v1.Hash{}, 0, fmt.Errorf("store layer %s: %w", diffID, err)
	}
	if err := closeSynced(ix); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("store layer %s: %w", diffID, err)
	}
	if err := os.Rename(dir, s.LayerDir(diffID)); err != nil && !s.HasLayer(diffID) {
		return v1.Hash{}, 0, fmt.Errorf("store layer %s: %w", diffID, err)
	}
	return diffID, cw.n, nil
}

func closeSynced(f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// LayerSize is the size of the layer's uncompressed tar.
func (s *Store) LayerSize(diffID v1.Hash) (int64, error) {
	fi, err := os.Stat(s.LayerTar(diffID))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// OpenLayer opens the layer's uncompressed tar. The reader verifies the diff ID
// when read to its end and fails with ErrCorrupt on a mismatch.
func (s *Store) OpenLayer(diffID v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(s.LayerTar(diffID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", diffID, err)
	}
	return &verifyingReader{f: f, h: sha256.New(), want: diffID, what: "layer"}, nil
}

// LayerEntries reads the index of a stored layer.
func (s *Store) LayerEntries(diffID v1.Hash) (*Index, error) {
	idx, err := ReadIndexFile(s.LayerIndex(diffID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", diffID, err)
	}
	return idx, nil
}

// verifyingReader reads a stored file and fails at its end when the content
// does not hash to want.
type verifyingReader struct {
	f    *os.File
	h    hash.Hash
	want v1.Hash
	what string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hashOf(v.h); got != v.want {
			return n, fmt.Errorf("%s %s: %w (it hashes to %s): remove the image that uses it and import or pull it again", v.what, v.want, ErrCorrupt, got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }

// ParseDigest accepts "sha256:<hex>" or a bare hex string.
func ParseDigest(s string) (v1.Hash, error) {
	if !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	return v1.NewHash(s)
}
