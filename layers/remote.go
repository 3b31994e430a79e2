package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/cli/cli/config/configfile"
	dockertypes "github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// This file is the store's side of the registry protocol: Pull, Push, Login
// and Logout. The protocol itself (token and basic auth, manifest lists,
// retries, existence checks, cross-repository mounts) is go-containerregistry's.
//
// A pulled image keeps the registry's manifest and config bytes, but not the
// compressed layer blobs: as Docker does, the store keeps only the
// uncompressed layer the union filesystem serves, and the manifest names
// each blob's digest, size and media type, with the repository it came from
// in RepoDigests. A layer is downloaded at most once: the compressed stream
// is hashed and, in the same pass, decompressed into layers/<diffid>; both
// digests must verify. Pushing the image back to a registry that has the
// blobs, or can mount them from the repository they came from, reproduces
// the manifest digest; elsewhere the layers are compressed again.
//
// A large layer's download is kept in tmp/partial-<hex> as it arrives, so
// that a pull interrupted (even killed) continues it with a Range request.

// RemoteOptions say how to reach registries. The zero value pulls the host's
// platform with Docker's credentials.
type RemoteOptions struct {
	// Platform is os/arch[/variant] to pick from a multi-platform image;
	// empty means the host's.
	Platform string
	// Insecure lists registries (host or host:port) reached over plain HTTP.
	// localhost and 127.0.0.0/8 always may be, as with Docker.
	Insecure []string
	// Mirrors maps a registry host (docker.io for Docker Hub) to mirrors
	// ("host[:port]" or "http(s)://host[:port]") tried before it, best effort.
	Mirrors map[string][]string
	// Keychain finds credentials; nil means roost's own credentials file
	// (AuthFile), then Docker's config.json ($DOCKER_CONFIG or ~/.docker)
	// with its credential helpers.
	Keychain authn.Keychain
	// AuthFile is roost's credentials file, in Docker's config.json format:
	// login writes it, logout edits it. Empty means
	// $XDG_CONFIG_HOME/roost/auth.json (~/.config/roost/auth.json).
	AuthFile string
	// Transport, when set, carries the HTTP requests; CertsDir and
	// SkipTLSVerify then do not apply.
	Transport http.RoundTripper
	// SkipTLSVerify skips the verification of registries' certificates and
	// allows plain HTTP to every registry (--tls-verify=false).
	SkipTLSVerify bool
	// CertsDir holds per-registry certificates in Docker's certs.d layout:
	// CertsDir/HOST[:PORT]/*.crt are CAs trusted for that registry besides
	// the system's, and *.cert with *.key a client certificate. Empty means
	// $XDG_CONFIG_HOME/roost/certs.d (~/.config/roost/certs.d).
	CertsDir string
	// Jobs bounds the layers transferred at once; 0 means 3.
	Jobs int
	// Progress, when set, is told what happens to each layer. Calls are
	// serialized; the callback must not block for long.
	Progress func(Progress)
}

// Progress is one event of a pull or push, in Docker's words.
type Progress struct {
	// Digest is the layer's blob digest as the manifest names it.
	Digest v1.Hash
	// Status is one of the Status* constants.
	Status string
	// Current and Total are bytes transferred so far and in all, for
	// StatusDownloading and StatusPushing.
	Current, Total int64
}

// Progress statuses, as Docker prints them.
const (
	StatusPullingLayer  = "Pulling fs layer"
	StatusAlreadyExists = "Already exists"
	StatusDownloading   = "Downloading"
	StatusRetrying      = "Retrying"
	StatusVerifying     = "Verifying Checksum"
	StatusDownloaded    = "Download complete"
	StatusPullComplete  = "Pull complete"
	StatusPreparing     = "Preparing"
	StatusPushing       = "Pushing"
	StatusPushed        = "Pushed"
	StatusLayerExists   = "Layer already exists"
)

// PullResult says what Pull stored.
type PullResult struct {
	// ID is the image ID.
	ID v1.Hash
	// Digest is the digest the reference resolved to in the registry: the
	// manifest list's, for a multi-platform image.
	Digest v1.Hash
	// Reference is the normalized reference pulled (docker.io/library/busybox:latest).
	Reference name.Reference
	// UpToDate is true when the store already had the image under this
	// reference and nothing changed.
	UpToDate bool
}

// PushResult says what Push wrote.
type PushResult struct {
	// Digest and Size are the pushed manifest's.
	Digest v1.Hash
	Size   int64
}

const defaultJobs = 3

// HostPlatform is the platform images are pulled for by default.
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return p
}

// Pull fetches ref (a tag, latest by default, or a digest) and stores it. On
// error, and when interrupted, the store holds no new image and nothing the
// pull wrote stays beyond the next collection; a later pull completes.
func (s *Store) Pull(ctx context.Context, ref string, o RemoteOptions) (res *PullResult, err error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	want, explicit := HostPlatform(), o.Platform != ""
	if explicit {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil {
			return nil, fmt.Errorf("parse platform %q: %w", o.Platform, err)
		}
		want = *p
	}
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
	res, err = s.pull(ctx, r, want, explicit, o)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", FamiliarString(r), o.explain(err, r))
	}
	return res, nil
}

func (s *Store) pull(ctx context.Context, r name.Reference, want v1.Platform, explicit bool, o RemoteOptions) (*PullResult, error) {
	rp := newReporter(o.Progress)
	desc, from, err := o.get(ctx, r)
	if err != nil {
		return nil, err
	}
	blobs := &blobFetcher{o: o, repo: from.Context()}
	var img v1.Image
	switch mt := desc.MediaType; {
	case mt.IsIndex():
		img, err = pickPlatform(desc, want)
	case mt.IsSchema1():
		return nil, fmt.Errorf("%s is a Docker schema 1 manifest, which roost does not pull: push the image again with a current Docker or Podman", desc.Digest)
	case mt.IsImage():
		img, err = desc.Image()
	default:
		return nil, fmt.Errorf("%s has media type %q, which is not an image", desc.Digest, mt)
	}
	if err != nil {
		return nil, err
	}
	mb, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(mb))
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	config, err := s.fetchConfig(img, m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return nil, fmt.Errorf("parse image config %s: %w", m.Config.Digest, err)
	}
	if explicit && (cf.OS != want.OS || cf.Architecture != want.Architecture) {
		return nil, fmt.Errorf("image is %s/%s, not the requested %s", cf.OS, cf.Architecture, want)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image config %s lists %d layers, its manifest %d", m.Config.Digest, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	type job struct {
		desc   v1.Descriptor
		diffID v1.Hash
	}
	var jobs []job
	queued := map[v1.Hash]bool{}
	for i, d := range m.Layers {
		diffID := cf.RootFS.DiffIDs[i]
		// A stored layer needs no download, whatever brought it (a pull, an
		// import, a load): a push finds its blob in the registry or
		// compresses it again.
		if s.HasLayer(diffID) || queued[d.Digest] {
			rp.report(Progress{Digest: d.Digest, Status: StatusAlreadyExists})
			continue
		}
		queued[d.Digest] = true
		rp.report(Progress{Digest: d.Digest, Status: StatusPullingLayer})
		jobs = append(jobs, job{d, diffID})
	}
	n := o.Jobs
	if n <= 0 {
		n = defaultJobs
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, n)
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := s.fetchLayer(ctx, img, blobs, j.desc, j.diffID, rp); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	// The first real failure, not the cancellations it caused.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var tags []name.Tag
	if t, ok := r.(name.Tag); ok {
		tags = append(tags, t)
	}
	repoDigest := r.Context().Digest(desc.Digest.String())
	id, upToDate, err := s.addPulledImage(config, mb, tags, Normalized(repoDigest))
	if err != nil {
		return nil, err
	}
	return &PullResult{ID: id, Digest: desc.Digest, Reference: r, UpToDate: upToDate}, nil
}

// get fetches the descriptor ref points at, from a mirror when one answers;
// from is the reference that answered.
func (o RemoteOptions) get(ctx context.Context, r name.Reference) (desc *remote.Descriptor, from name.Reference, err error) {
	for _, m := range o.Mirrors[registry(r.Context())] {
		host, insecure := mirrorHost(m)
		mr, err := name.ParseReference(host+"/"+r.Context().RepositoryStr()+sep(r)+r.Identifier(), o.nameOpts(host, insecure)...)
		if err != nil {
			continue
		}
		if d, err := remote.Get(mr, o.remoteOpts(ctx)...); err == nil {
			return d, mr, nil
		}
	}
	rr, err := o.reference(r)
	if err != nil {
		return nil, nil, err
	}
	desc, err = remote.Get(rr, o.remoteOpts(ctx)...)
	return desc, rr, err
}

// mirrorHost strips a mirror's scheme; http:// marks it insecure.
func mirrorHost(m string) (host string, insecure bool) {
	if h, ok := strings.CutPrefix(m, "http://"); ok {
		return strings.TrimSuffix(h, "/"), true
	}
	return strings.TrimSuffix(strings.TrimPrefix(m, "https://"), "/"), false
}

// reference re-parses r with the transport options its registry needs.
func (o RemoteOptions) reference(r name.Reference) (name.Reference, error) {
	return name.ParseReference(r.Name(), o.nameOpts(r.Context().RegistryStr(), false)...)
}

func (o RemoteOptions) nameOpts(host string, insecure bool) []name.Option {
	opts := []name.Option{name.WithDefaultRegistry("docker.io")}
	if insecure || o.SkipTLSVerify || o.insecure(host) {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// insecure reports whether host may be reached over plain HTTP.
func (o RemoteOptions) insecure(host string) bool {
	if slices.Contains(o.Insecure, host) {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if slices.Contains(o.Insecure, h) || h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (o RemoteOptions) remoteOpts(ctx context.Context) []remote.Option {
	kc := o.keychain()
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = defaultJobs
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithJobs(jobs),
		remote.WithUserAgent("roost"),
	}
	return append(opts, remote.WithTransport(o.transport()))
}

// keychain is o.Keychain, or roost's credentials file, then Docker's.
func (o RemoteOptions) keychain() authn.Keychain {
	if o.Keychain != nil {
		return o.Keychain
	}
	return authn.NewMultiKeychain(fileKeychain{path: o.authFile()}, authn.DefaultKeychain)
}

// pickPlatform picks the image for want from a manifest list or OCI index.
func pickPlatform(desc *remote.Descriptor, want v1.Platform) (v1.Image, error) {
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
outer:
	for depth := 0; depth < 4; depth++ {
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		var have []string
		for _, d := range im.Manifests {
			if d.Platform == nil || d.Platform.OS == "unknown" {
				continue
			}
			have = append(have, d.Platform.String())
			p := d.Platform
			if p.OS != want.OS || p.Architecture != want.Architecture || want.Variant != "" && p.Variant != want.Variant {
				continue
			}
			if d.MediaType.IsIndex() {
				if idx, err = idx.ImageIndex(d.Digest); err != nil {
					return nil, err
				}
				continue outer
			}
			return idx.Image(d.Digest)
		}
		if len(have) == 0 {
			return nil, fmt.Errorf("manifest list %s names no platforms", desc.Digest)
		}
		return nil, fmt.Errorf("no image for %s in manifest list %s (it has %s): choose one with --platform", want, desc.Digest, strings.Join(have, ", "))
	}
	return nil, fmt.Errorf("manifest list %s nests too deeply", desc.Digest)
}

// fetchConfig returns the image's config, from the store when it has it.
func (s *Store) fetchConfig(img v1.Image, h v1.Hash) ([]byte, error) {
	if s.HasBlob(h) {
		if b, err := s.Blob(h); err == nil {
			return b, nil
		}
	}
	b, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("fetch image config %s: %w", h, err)
	}
	if got := sha256Of(b); got != h {
		return nil, fmt.Errorf("image config %s: %w (it hashes to %s)", h, ErrCorrupt, got)
	}
	return b, nil
}

func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}
}

// fetchLayer downloads one layer into the store, retrying transfers that
// break off; a retry continues a large layer where the last try stopped.
func (s *Store) fetchLayer(ctx context.Context, img v1.Image, blobs *blobFetcher, d v1.Descriptor, diffID v1.Hash, rp *reporter) error {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	const attempts = 3
	for try := 1; ; try++ {
		err = s.fetchLayerOnce(ctx, l, blobs, d, diffID, rp)
		if err != nil && try > 1 {
			err = fmt.Errorf("%w (download tried %d times)", err, try)
		}
		if err == nil || try == attempts || !retryable(ctx, err) {
			break
		}
		rp.report(Progress{Digest: d.Digest, Status: StatusRetrying})
		select {
		case <-time.After(time.Duration(try) * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	rp.report(Progress{Digest: d.Digest, Status: StatusPullComplete})
	return nil
}

// retryable reports whether a failed layer download may succeed again: the
// connection broke, not the content or the request.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() == nil && errors.Is(err, errPartialBad) {
		return true
	}
	if ctx.Err() != nil || errors.Is(err, ErrCorrupt) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests
	}
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

func (s *Store) fetchLayerOnce(ctx context.Context, l v1.Layer, blobs *blobFetcher, d v1.Descriptor, diffID v1.Hash, rp *reporter) error {
	var part *partialDownload
	if d.Size >= resumeMin && d.Digest.Algorithm == "sha256" {
		var err error
		if part, err = s.openPartial(d.Digest, d.Size); err != nil {
			return err
		}
		defer part.close()
	}
	var body io.ReadCloser
	var err error
	if part != nil && part.size > d.Size {
		err = part.restart()
	}
	resumed := part != nil && part.size > 0
	switch {
	case err != nil:
	case resumed && part.size == d.Size:
		body = io.NopCloser(strings.NewReader(""))
	case resumed:
		var from int64
		body, from, err = blobs.fetchFrom(ctx, d.Digest, part.size)
		if err == nil && from != part.size {
			err = part.restart()
		}
	default:
		var rc io.ReadCloser
		if rc, err = l.Compressed(); err == nil {
			body = struct {
				io.Reader
				io.Closer
			}{corruptReader{rc}, rc}
		}
	}
	if err != nil {
		return err
	}
	defer body.Close()
	stop := context.AfterFunc(ctx, func() { body.Close() })
	defer stop()
	var r io.Reader = body
	if part != nil {
		r = part.reader(body)
	}
	pr := &progressReader{r: r, total: d.Size, report: func(n int64) {
		rp.report(Progress{Digest: d.Digest, Status: StatusDownloading, Current: n, Total: d.Size})
	}}
	// go-containerregistry verifies what it fetches; a resumed download
	// is verified here.
	srcErr, err := s.putPulledLayer(pr, !resumed, d, diffID, func() {
		rp.report(Progress{Digest: d.Digest, Status: StatusVerifying})
	})
	switch {
	case err == nil:
		part.remove()
		rp.report(Progress{Digest: d.Digest, Status: StatusDownloaded})
	case ctx.Err() != nil:
		return ctx.Err()
	case resumed && errors.Is(err, ErrCorrupt):
		// The kept bytes were bad (a crash lost some): start again.
		part.remove()
		return fmt.Errorf("%w: %w", errPartialBad, err)
	case !srcErr || errors.Is(err, ErrCorrupt):
		// What was kept is of no use again.
		part.remove()
	}
	return err
}

// errPartialBad says that a download continued from kept bytes did not
// verify; they are deleted, and a new try starts from the beginning.
var errPartialBad = errors.New("the kept part of an interrupted download was damaged")

// corruptReader turns go-containerregistry's digest and size checks of a
// fetched blob into ErrCorrupt.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == nil || err == io.EOF || !strings.HasPrefix(err.Error(), "error verifying") {
		return n, err
	}
	if m := verifyDigestErr().FindStringSubmatch(err.Error()); m != nil {
		return n, fmt.Errorf("%w (it hashes to %s)", ErrCorrupt, m[1])
	}
	if m := verifySizeErr().FindStringSubmatch(err.Error()); m != nil {
		return n, fmt.Errorf("%w: the registry sent %s bytes, the manifest says %s", ErrCorrupt, m[1], m[2])
	}
	return n, fmt.Errorf("%w: %s", ErrCorrupt, err)
}

// go-containerregistry's verify errors, which have no type. Regular
// expressions are compiled on first use: every roost process (the CLI, each
// agent and init) would compile them at start-up otherwise.
var (
	verifyDigestErr = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`got "?(sha256:[0-9a-f]{64})"?`) })
	verifySizeErr   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`verifying size; got (\d+), want (\d+)`) })
)

// putPulledLayer stores the uncompressed layer of a fetched blob (or the
// blob itself when it is the uncompressed layer), in one pass over r, in a
// pipeline: one goroutine reads (and, unless verified says r checks it
// itself, hashes) the blob, another decompresses it, and the caller's indexes,
// hashes and writes the layer. The blob's size and digest and the layer's
// diff ID must verify; the error names the one that does not. fromSource
// says the error came from reading r (a download that broke off or sent bad
// bytes).
func (s *Store) putPulledLayer(r io.Reader, verified bool, d v1.Descriptor, diffID v1.Hash, verifying func()) (fromSource bool, err error) {
	pr, pw := io.Pipe()
	readErr := make(chan error, 1)
	go func() {
		h := sha256.New()
		var src io.Reader = io.LimitReader(r, d.Size+1)
		if verified {
			h, src = nil, r
		} else {
			src = io.TeeReader(src, h)
		}
		n, err := io.CopyBuffer(pw, src, make([]byte, 1<<20))
		if err == nil && h != nil {
			switch got := hashOf(h); {
			case n != d.Size:
				err = fmt.Errorf("%w: the registry sent %d bytes or more, the manifest says %d", ErrCorrupt, n, d.Size)
			case got != d.Digest:
				err = fmt.Errorf("%w (it hashes to %s)", ErrCorrupt, got)
			}
		}
		pw.CloseWithError(err)
		readErr <- err
	}()
	var got v1.Hash
	if d.Digest == diffID {
		got, _, err = s.PutLayer(pr)
	} else {
		var dr io.Reader
		if dr, err = Decompress(pr); err == nil {
			ar := readAhead(dr)
			got, _, err = s.PutLayer(ar)
			if err != nil {
				// The decompressor may wait for the blob: end it.
				pr.CloseWithError(errLayerFailed)
			}
			ar.Close()
			if c, ok := dr.(io.Closer); ok {
				c.Close()
			}
		}
	}
	if err == nil {
		// The compressed stream may end after the tar does.
		_, err = io.Copy(io.Discard, pr)
	}
	if err != nil {
		pr.CloseWithError(errLayerFailed)
	} else {
		pr.Close()
	}
	rerr := <-readErr
	verifying()
	switch {
	case rerr != nil && rerr != errLayerFailed:
		// The blob failed first; the layer failed because of it.
		return true, rerr
	case err != nil:
		return false, err
	case got != diffID:
		return false, fmt.Errorf("%w: its content hashes to %s, the image config says %s", ErrCorrupt, got, diffID)
	}
	return false, nil
}

// errLayerFailed stops the reading of a blob whose layer could not be stored.
var errLayerFailed = errors.New("layer not stored")

// addPulledImage stores an image as a registry serves it: its config and
// manifest bytes unchanged, its layers already in the store. It points tags
// at it and records repoDigest. upToDate says the store already had all of it.
func (s *Store) addPulledImage(config, manifest []byte, tags []name.Tag, repoDigest string) (id v1.Hash, upToDate bool, err error) {
	cf, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("parse image config: %w", err)
	}
	var total int64
	for _, d := range cf.RootFS.DiffIDs {
		size, err := s.LayerSize(d)
		if err != nil {
			return v1.Hash{}, false, err
		}
		total += size
	}
	if id, err = s.PutBlob(config); err != nil {
		return v1.Hash{}, false, err
	}
	md, err := s.PutBlob(manifest)
	if err != nil {
		return v1.Hash{}, false, err
	}
	unlock, err := s.metaLock()
	if err != nil {
		return v1.Hash{}, false, err
	}
	defer unlock()
	now := time.Now().UTC()
	rec, err := s.readRecord(id)
	switch {
	case errors.Is(err, ErrNotFound):
		rec = &Record{ID: id, Size: total, Created: cf.Created.Time, Added: now}
	case err != nil:
		return v1.Hash{}, false, err
	default:
		upToDate = rec.Manifest == md && slices.Contains(rec.RepoDigests, repoDigest)
	}
	// The registry's manifest replaces one the store made (by import or
	// load) so that a push sends the bytes the registry has.
	rec.Manifest = md
	if !slices.Contains(rec.RepoDigests, repoDigest) {
		rec.RepoDigests = append(rec.RepoDigests, repoDigest)
	}
	tf, err := s.readTags()
	if err != nil {
		return v1.Hash{}, false, err
	}
	retag := false
	for _, t := range tags {
		if tf.Tags[Normalized(t)] != id {
			tf.Tags[Normalized(t)] = id
			retag = true
		}
	}
	if retag {
		rec.LastTag = now
		upToDate = false
	}
	if err := s.writeJSON(s.recordPath(id), rec); err != nil {
		return v1.Hash{}, false, fmt.Errorf("write image %s: %w", id, err)
	}
	if retag {
		if err := s.writeTags(tf); err != nil {
			return v1.Hash{}, false, err
		}
	}
	return id, upToDate, nil
}

// addRepoDigest records that the image is known to a registry by repoDigest.
func (s *Store) addRepoDigest(id v1.Hash, repoDigest string) error {
	unlock, err := s.metaLock()
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := s.readRecord(id)
	if err != nil {
		return err
	}
	if slices.Contains(rec.RepoDigests, repoDigest) {
		return nil
	}
	rec.RepoDigests = append(rec.RepoDigests, repoDigest)
	if err := s.writeJSON(s.recordPath(id), rec); err != nil {
		return fmt.Errorf("write image %s: %w", id, err)
	}
	return nil
}

// Push uploads the stored image that ref names to ref's registry. Blobs the
// registry has are not sent again, and layers the image was pulled with from
// another repository of the same registry are mounted from there. The pushed
// digest is recorded in the image's RepoDigests.
func (s *Store) Push(ctx context.Context, ref string, o RemoteOptions) (*PushResult, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	res, err := s.push(ctx, r, img, o)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", FamiliarString(r), o.explain(err, r))
	}
	return res, nil
}

// push sends the image as stored. When the registry lacks a layer whose
// compressed blob the store did not keep (a pulled image's, pushed to
// another registry) and cannot mount it, the push starts again with those
// layers compressed anew as they are uploaded (see recompressed); the
// manifest digest then differs from the registry's.
func (s *Store) push(ctx context.Context, r name.Reference, img *Image, o RemoteOptions) (*PushResult, error) {
	cimg, undo, err := s.compressLayers(img)
	if err != nil {
		return nil, err
	}
	vi, err := s.V1Image(cimg)
	if err != nil {
		undo()
		return nil, err
	}
	// A layer whose blob is not kept is reported once the registry is
	// found to have it, or by the second push if it has not.
	first := o
	if notKept := s.blobsNotKept(cimg); len(notKept) > 0 && o.Progress != nil {
		first.Progress = func(p Progress) {
			if p.Status != StatusPreparing || !notKept[p.Digest] {
				o.Progress(p)
			}
		}
	}
	res, err := s.pushImage(ctx, r, cimg, vi, first)
	if err != nil {
		undo() // a failed push leaves the store as it was
	}
	if !errors.Is(err, errBlobNotKept) {
		return res, err
	}
	ri, err := s.recompressed(img)
	if err != nil {
		return nil, err
	}
	return s.pushImage(ctx, r, img, ri, o)
}

// blobsNotKept are the image's layer blobs that the store does not keep
// (a pulled image's compressed blobs).
func (s *Store) blobsNotKept(img *Image) map[v1.Hash]bool {
	m, _, err := s.Manifest(img)
	if err != nil {
		return nil
	}
	cf, _, err := s.Config(img.ID)
	if err != nil || len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil
	}
	out := map[v1.Hash]bool{}
	for i, d := range m.Layers {
		if d.Digest != cf.RootFS.DiffIDs[i] && !s.HasBlob(d.Digest) {
			out[d.Digest] = true
		}
	}
	return out
}

// pushImage writes vi, the stored image img as it goes out, to r.
func (s *Store) pushImage(ctx context.Context, r name.Reference, img *Image, vi v1.Image, o RemoteOptions) (*PushResult, error) {
	rr, err := o.reference(r)
	if err != nil {
		return nil, err
	}
	var origin name.Reference
	_, fresh := vi.(*recompressedImage) // its new blobs are nowhere to mount from
	for _, rd := range img.RepoDigests {
		if fresh {
			break
		}
		d, err := name.NewDigest(rd)
		if err == nil && d.Context().RegistryStr() == rr.Context().RegistryStr() && d.Context().RepositoryStr() != rr.Context().RepositoryStr() {
			origin = d
			break
		}
	}
	pi := &pushImage{Image: vi, rp: newReporter(o.Progress), origin: origin}
	ls, err := pi.Layers()
	if err != nil {
		return nil, err
	}
	ids := make([]v1.Hash, len(ls))
	for i, l := range ls {
		ids[i] = progressID(l)
		pi.rp.report(Progress{Digest: ids[i], Status: StatusPreparing})
	}
	if err := remote.Write(rr, pi, o.remoteOpts(ctx)...); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !pi.pushed(id) {
			pi.rp.report(Progress{Digest: id, Status: StatusLayerExists})
		}
	}
	mb, err := vi.RawManifest()
	if err != nil {
		return nil, err
	}
	dg := sha256Of(mb)
	if err := s.addRepoDigest(img.ID, Normalized(r.Context().Digest(dg.String()))); err != nil {
		return nil, err
	}
	return &PushResult{Digest: dg, Size: int64(len(mb))}, nil
}

// progressID names a layer in push progress: its digest, or its diff ID
// while the digest is not known (a layer compressed as it is uploaded).
func progressID(l v1.Layer) v1.Hash {
	if d, err := l.Digest(); err == nil {
		return d
	}
	d, _ := l.DiffID()
	return d
}

// pushImage is a stored image whose layers report their upload and may be
// mounted from the repository the image was pulled from.
type pushImage struct {
	v1.Image
	rp     *reporter
	origin name.Reference

	mu   sync.Mutex
	sent map[v1.Hash]bool
}

func (pi *pushImage) pushed(d v1.Hash) bool {
	pi.mu.Lock()
	defer pi.mu.Unlock()
	return pi.sent[d]
}

func (pi *pushImage) wrap(l v1.Layer) v1.Layer {
	pl := &pushLayer{Layer: l, pi: pi}
	if pi.origin != nil {
		return &remote.MountableLayer{Layer: pl, Reference: pi.origin}
	}
	return pl
}

// Layers implements v1.Image.
func (pi *pushImage) Layers() ([]v1.Layer, error) {
	ls, err := pi.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = pi.wrap(l)
	}
	return out, nil
}

// LayerByDigest implements v1.Image.
func (pi *pushImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := pi.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return pi.wrap(l), nil
}

// pushLayer reports the upload of one layer.
type pushLayer struct {
	v1.Layer
	pi *pushImage
}

// Compressed implements v1.Layer: go-containerregistry opens it only to upload.
func (l *pushLayer) Compressed() (io.ReadCloser, error) {
	d := progressID(l.Layer)
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	size, _ := l.Size()
	rp := l.pi.rp
	return &progressReader{r: rc, total: size, closer: rc, report: func(n int64) {
		rp.report(Progress{Digest: d, Status: StatusPushing, Current: n, Total: size})
	}, done: func() {
		l.pi.mu.Lock()
		if l.pi.sent == nil {
			l.pi.sent = map[v1.Hash]bool{}
		}
		first := !l.pi.sent[d]
		l.pi.sent[d] = true
		l.pi.mu.Unlock()
		if first {
			rp.report(Progress{Digest: d, Status: StatusPushed})
		}
	}}, nil
}

// reporter serializes progress callbacks.
type reporter struct {
	mu sync.Mutex
	fn func(Progress)
}

func newReporter(fn func(Progress)) *reporter { return &reporter{fn: fn} }

func (r *reporter) report(p Progress) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(p)
}

// progressReader counts bytes read and reports at most every 100ms; done is
// called once when the stream reaches its end.
type progressReader struct {
	r      io.Reader
	closer io.Closer
	total  int64
	n      int64
	last   time.Time
	report func(n int64)
	done   func()
	ended  bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.report != nil && (time.Since(p.last) > 100*time.Millisecond || p.n == p.total) && n > 0 {
		p.last = time.Now()
		p.report(p.n)
	}
	if err == io.EOF && !p.ended {
		p.ended = true
		if p.done != nil {
			p.done()
		}
	}
	return n, err
}

func (p *progressReader) Close() error {
	if p.closer != nil {
		return p.closer.Close()
	}
	return nil
}

// explain turns registry errors into what a user can act on.
func (o RemoteOptions) explain(err error, r name.Reference) error {
	reg := r.Context().Registry
	var te *transport.Error
	if errors.As(err, &te) {
		what := diagnostic(te)
		blob := te.Request != nil && strings.Contains(te.Request.URL.Path, "/blobs/")
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden || hasCode(te, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			return fmt.Errorf("%s: run `roost login %s` first, or check the repository name", what, loginServer(reg))
		case blob:
			return err
		case hasCode(te, transport.NameUnknownErrorCode):
			return fmt.Errorf("repository %s not found in the registry (%s)", FamiliarRepository(r.Context()), what)
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode):
			return fmt.Errorf("manifest for %s not found: no such image or tag in the registry (%s)", FamiliarString(r), what)
		}
	}
	return o.explainTLS(err, reg.RegistryStr())
}

// diagnostic is the registry's own short account of an error.
func diagnostic(te *transport.Error) string {
	if len(te.Errors) > 0 {
		d := te.Errors[0]
		if d.Message != "" {
			return fmt.Sprintf("%s: %s", d.Code, d.Message)
		}
		return string(d.Code)
	}
	return fmt.Sprintf("HTTP %d %s", te.StatusCode, http.StatusText(te.StatusCode))
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if slices.Contains(codes, d.Code) {
			return true
		}
	}
	return false
}

// loginServer is how a registry is named to login, and the key of its
// credentials in Docker's config.json.
func loginServer(reg name.Registry) string {
	if reg.RegistryStr() == name.DefaultRegistry {
		return "docker.io"
	}
	return reg.RegistryStr()
}

func configKey(reg name.Registry) string {
	if reg.RegistryStr() == name.DefaultRegistry {
		return authn.DefaultAuthKey
	}
	return reg.RegistryStr()
}

// parseServer reads a login server: host[:port], optionally as a URL;
// empty means Docker Hub.
func (o RemoteOptions) parseServer(server string) (name.Registry, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	if s == "" || s == "docker.io" || s == "index.docker.io" || s == "registry-1.docker.io" {
		s = name.DefaultRegistry
	}
	var opts []name.Option
	if o.SkipTLSVerify || o.insecure(s) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(s, opts...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("invalid registry %q: %w", server, err)
	}
	return reg, nil
}

// Login checks user and password against server's registry (Docker Hub when
// empty) and stores them in roost's credentials file (see
// RemoteOptions.AuthFile), or in the credential helper that file names. It
// returns the server's name as stored.
func Login(ctx context.Context, server, user, password string, o RemoteOptions) (string, error) {
	reg, err := o.parseServer(server)
	if err != nil {
		return "", err
	}
	if user == "" || password == "" {
		return "", errors.New("login: a username and a password are needed")
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	if err := checkLogin(ctx, reg, auth, o); err != nil {
		return "", fmt.Errorf("login %s: %w", loginServer(reg), o.explainTLS(err, reg.RegistryStr()))
	}
	cf, err := loadAuthFile(o.authFile())
	if err != nil {
		return "", fmt.Errorf("login %s: %w", loginServer(reg), err)
	}
	key := configKey(reg)
	if err := cf.GetCredentialsStore(key).Store(dockertypes.AuthConfig{ServerAddress: key, Username: user, Password: password}); err != nil {
		return "", fmt.Errorf("login %s: store credentials: %w", loginServer(reg), err)
	}
	if err := cf.Save(); err != nil {
		return "", fmt.Errorf("login %s: save %s: %w", loginServer(reg), cf.Filename, err)
	}
	return loginServer(reg), nil
}

// checkLogin asks the registry's /v2/ endpoint with the credentials: basic
// auth is sent as is, a token service is asked for a token.
func checkLogin(ctx context.Context, reg name.Registry, auth authn.Authenticator, o RemoteOptions) error {
	rt, err := transport.NewWithContext(ctx, reg, auth, o.transport(), []string{})
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return fmt.Errorf("unauthorized: incorrect username or password (%s)", diagnostic(te))
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return errors.New("unauthorized: incorrect username or password")
	}
	return transport.CheckError(resp, http.StatusOK)
}

// authFile is roost's credentials file.
func (o RemoteOptions) authFile() string {
	if o.AuthFile != "" {
		return o.AuthFile
	}
	return filepath.Join(configDir(), "roost", "auth.json")
}

// configDir is $XDG_CONFIG_HOME, or ~/.config.
func configDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return d
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(h, ".config")
}

// loadAuthFile reads a credentials file in Docker's config.json format;
// a missing file is an empty one that Save creates (mode 0600).
func loadAuthFile(p string) (*configfile.ConfigFile, error) {
	cf := configfile.New(p)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return cf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer f.Close()
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", p, err)
	}
	return cf, nil
}

// fileKeychain finds credentials in a file in Docker's config.json format,
// and in the credential helpers it names, looking them up as Docker does:
// by repository, then by registry.
type fileKeychain struct{ path string }

var _ authn.Keychain = fileKeychain{}

// Resolve implements authn.Keychain. A missing file has no credentials.
func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	if _, err := os.Stat(k.path); errors.Is(err, os.ErrNotExist) {
		return authn.Anonymous, nil
	}
	cf, err := loadAuthFile(k.path)
	if err != nil {
		return nil, err
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		ac, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("read credentials for %s: %w", key, err)
		}
		if ac.Username != "" || ac.Password != "" || ac.Auth != "" || ac.IdentityToken != "" || ac.RegistryToken != "" {
			return authn.FromConfig(authn.AuthConfig{
				Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
				IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// Logout removes the credentials roost's credentials file holds for server
// (Docker Hub when empty). It reports whether there were any. Docker's
// config.json is left alone, as podman logout leaves it.
func Logout(server string, o RemoteOptions) (string, bool, error) {
	reg, err := o.parseServer(server)
	if err != nil {
		return "", false, err
	}
	cf, err := loadAuthFile(o.authFile())
	if err != nil {
		return "", false, fmt.Errorf("logout %s: %w", loginServer(reg), err)
	}
	key := configKey(reg)
	found := false
	for _, k := range []string{key, "http://" + key, "https://" + key} {
		if _, ok := cf.AuthConfigs[k]; ok {
			found = true
			if err := cf.GetCredentialsStore(k).Erase(k); err != nil {
				return "", false, fmt.Errorf("logout %s: %w", loginServer(reg), err)
			}
		}
	}
	if !found {
		return loginServer(reg), false, nil
	}
	if err := cf.Save(); err != nil {
		return "", false, fmt.Errorf("logout %s: save %s: %w", loginServer(reg), cf.Filename, err)
	}
	return loginServer(reg), true, nil
}

// explainTLS turns a failed certificate verification into advice: where to
// put the registry's CA, or how to skip verification. Other errors are
// returned as they are.
func (o RemoteOptions) explainTLS(err error, host string) error {
	te := tlsVerifyError(err)
	if te == nil {
		return err
	}
	return fmt.Errorf("cannot verify the TLS certificate of %s (%v): to trust its CA, put the CA certificate in %s; or, to skip verification, pass --tls-verify=false or list %s under registries.insecure in roost's config",
		host, te, filepath.Join(o.certsDir(), host, "ca.crt"), host)
}

// tlsVerifyError is the certificate verification failure within err, if
// any. It is found even where a plain-HTTP fallback failed too.
func tlsVerifyError(err error) error {
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	var ve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ue):
		return ue
	case errors.As(err, &he):
		return he
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &ve):
		return ve
	}
	return nil
}

// certsDir is where per-registry certificates are looked for.
func (o RemoteOptions) certsDir() string {
	if o.CertsDir != "" {
		return o.CertsDir
	}
	return filepath.Join(configDir(), "roost", "certs.d")
}

// transport is o.Transport, or one that trusts each registry's certs.d
// CAs besides the system's, skips verification where o says so and honours
// HTTP(S)_PROXY and NO_PROXY.
func (o RemoteOptions) transport() http.RoundTripper {
	if o.Transport != nil {
		return o.Transport
	}
	return &hostTransport{o: o, dir: o.certsDir(), hosts: map[string]*hostTLS{}}
}

// hostTransport carries each host's requests with that host's TLS settings.
type hostTransport struct {
	o   RemoteOptions
	dir string

	mu    sync.Mutex
	hosts map[string]*hostTLS
}

type hostTLS struct {
	once sync.Once
	rt   http.RoundTripper
	err  error
}

// RoundTrip implements http.RoundTripper.
func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	t.mu.Lock()
	h := t.hosts[host]
	if h == nil {
		h = &hostTLS{}
		t.hosts[host] = h
	}
	t.mu.Unlock()
	h.once.Do(func() { h.rt, h.err = t.newTransport(host) })
	if h.err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, h.err
	}
	return h.rt.RoundTrip(req)
}

// newTransport is the transport for host (host[:port] as in the URL).
func (t *hostTransport) newTransport(host string) (http.RoundTripper, error) {
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.o.SkipTLSVerify || slices.Contains(t.o.Insecure, host) || slices.Contains(t.o.Insecure, hostname) {
		cfg.InsecureSkipVerify = true
	}
	dir := filepath.Join(t.dir, host)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read registry certificates: %w", err)
	}
	var pool *x509.CertPool
	for _, ent := range ents {
		n := ent.Name()
		p := filepath.Join(dir, n)
		switch {
		case strings.HasSuffix(n, ".crt"):
			if pool == nil {
				if pool, err = x509.SystemCertPool(); err != nil {
					pool = x509.NewCertPool()
				}
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read registry CA: %w", err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("registry CA %s holds no PEM certificate", p)
			}
		case strings.HasSuffix(n, ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			c, err := tls.LoadX509KeyPair(p, key)
			if err != nil {
				return nil, fmt.Errorf("registry client certificate %s: %w", p, err)
			}
			cfg.Certificates = append(cfg.Certificates, c)
		}
	}
	cfg.RootCAs = pool // nil: the system's roots
	base, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return remote.DefaultTransport, nil
	}
	tr := base.Clone()
	tr.Proxy = http.ProxyFromEnvironment
	tr.TLSClientConfig = cfg
	return tr, nil
}
