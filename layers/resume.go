package layers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sys/unix"
)

// resumeMin is the size from which a layer's download is kept as it
// arrives, so that a pull interrupted, even killed, continues it with a
// Range request instead of starting again.
const resumeMin = 16 << 20

// partialPrefix names kept downloads in tmp/: partial-<hex of the blob>.
// They survive the collection after a failed pull; prune removes them.
const partialPrefix = "partial-"

// partialDownload is the kept download of one blob, locked while one pull
// writes it. The nil *partialDownload keeps nothing.
type partialDownload struct {
	f    *os.File
	size int64 // bytes kept, the blob's first
}

// openPartial opens (creating it) the kept download of blob h, of size
// bytes, and locks it. It returns nil, keeping nothing, when another pull is
// downloading the same blob, or when the store's filesystem has not room
// for the download besides the layer it decompresses to (see Reserve).
func (s *Store) openPartial(h v1.Hash, size int64) (*partialDownload, error) {
	dir := filepath.Join(s.root, "tmp")
	p := filepath.Join(dir, partialPrefix+h.Hex)
	if _, err := os.Stat(p); err != nil {
		// A new download: the layer takes some multiple of the blob.
		if _, err := checkFree(dir, s.Reserve, 4*size); err != nil {
			return nil, nil
		}
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keep download of %s: %w", h, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("keep download of %s: %w", h, err)
	}
	return &partialDownload{f: f, size: fi.Size()}, nil
}

// reader is the whole blob: the kept bytes, then rest, which is kept too
// as it is read, as long as it can be: keeping is best effort, and a write
// that fails (the disk is full) deletes what was kept and keeps no more.
func (p *partialDownload) reader(rest io.Reader) io.Reader {
	tee := io.TeeReader(rest, &keepWriter{p: p, w: io.NewOffsetWriter(p.f, p.size)})
	if p.size == 0 {
		return tee
	}
	return io.MultiReader(io.NewSectionReader(p.f, 0, p.size), tee)
}

// keepWriter writes what a download reads to its kept file until a write
// fails; it never fails the download.
type keepWriter struct {
	p      *partialDownload
	w      io.Writer
	failed bool
}

func (k *keepWriter) Write(b []byte) (int, error) {
	if !k.failed {
		if _, err := k.w.Write(b); err != nil {
			k.failed = true
			k.p.f.Truncate(0)
			k.p.remove()
		}
	}
	return len(b), nil
}

// restart drops the kept bytes: the registry sends the whole blob again.
func (p *partialDownload) restart() error {
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("keep download: %w", err)
	}
	p.size = 0
	return nil
}

// remove deletes the kept download: it is stored, or of no use.
func (p *partialDownload) remove() {
	if p != nil {
		os.Remove(p.f.Name())
	}
}

// close releases the kept download for the next pull.
func (p *partialDownload) close() {
	if p != nil {
		p.f.Close()
	}
}

// isPartial reports whether a name in tmp/ is a kept download.
func isPartial(name string) bool { return strings.HasPrefix(name, partialPrefix) }

// blobFetcher fetches blobs of one repository from an offset, for downloads
// that continue where an earlier one stopped. Its authorized transport is
// made on first use.
type blobFetcher struct {
	o    RemoteOptions
	repo name.Repository

	once   sync.Once
	client *http.Client
	err    error
}

// fetchFrom asks for blob h from byte off on. from is where the body
// starts: off, or 0 when the registry ignored the Range and sends it all.
func (b *blobFetcher) fetchFrom(ctx context.Context, h v1.Hash, off int64) (body io.ReadCloser, from int64, err error) {
	b.once.Do(func() {
		auth, err := authn.Resolve(ctx, b.o.keychain(), b.repo)
		if err != nil {
			b.err = err
			return
		}
		rt, err := transport.NewWithContext(ctx, b.repo.Registry, auth, b.o.transport(), []string{b.repo.Scope(transport.PullScope)})
		if err != nil {
			b.err = err
			return
		}
		b.client = &http.Client{Transport: rt}
	})
	if b.err != nil {
		return nil, 0, b.err
	}
	u := url.URL{Scheme: b.repo.Scheme(), Host: b.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", b.repo.RepositoryStr(), h)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != off {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("blob %s: asked for bytes from %d, the registry sent %q", h, off, resp.Header.Get("Content-Range"))
		}
		return resp.Body, off, nil
	case http.StatusOK:
		return resp.Body, 0, nil
	}
	defer resp.Body.Close()
	return nil, 0, transport.CheckError(resp, http.StatusOK, http.StatusPartialContent)
}
