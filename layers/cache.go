package layers

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// The build cache maps a build step's key (a hex sha256 the builder derives
// from the step's parent, its instruction and its sources) to the image
// config the step produced. A record is one small file,
// buildcache/<key>.json, holding that config; the layers it lists stay in
// the store while the record exists. A record whose layers are gone is a
// miss. Records are written atomically and are never changed, only removed.

func (s *Store) cacheDir() string { return filepath.Join(s.root, "buildcache") }

// CacheDir is where build cache records live; the builder may keep its own
// derived files there (they go with PruneCache).
func (s *Store) CacheDir() string { return s.cacheDir() }

func validCacheKey(key string) bool {
	b, err := hex.DecodeString(key)
	return err == nil && len(b) == 32
}

// PutCache records config (raw JSON, kept byte for byte) as the result of
// the build step key.
// The caller must hold the writer lock (see Writing) from before it stored
// the config's layers. Idempotent.
func (s *Store) PutCache(key string, config []byte) error {
	if !validCacheKey(key) {
		return fmt.Errorf("store build cache: bad key %q", key)
	}
	if err := os.MkdirAll(s.cacheDir(), 0o700); err != nil {
		return fmt.Errorf("store build cache: %w", err)
	}
	f, err := os.CreateTemp(s.cacheDir(), ".tmp-")
	if err == nil {
		if err = writeAll(f, config); err == nil {
			if err = os.Rename(f.Name(), filepath.Join(s.cacheDir(), key+".json")); err != nil {
				os.Remove(f.Name())
			}
		}
	}
	if err != nil {
		return fmt.Errorf("store build cache %s: %w", key, err)
	}
	return nil
}

// Cache returns the config recorded for the build step key, when there is
// one and all its layers are stored.
func (s *Store) Cache(key string) ([]byte, bool) {
	if !validCacheKey(key) {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(s.cacheDir(), key+".json"))
	if err != nil {
		return nil, false
	}
	cf, err := v1.ParseConfigFile(strings.NewReader(string(b)))
	if err != nil {
		return nil, false
	}
	for _, d := range cf.RootFS.DiffIDs {
		if !s.HasLayer(d) {
			return nil, false
		}
	}
	return b, true
}

// cacheLayers lists the layers that build cache records reference.
func (s *Store) cacheLayers() map[string]bool {
	keep := map[string]bool{}
	ents, _ := os.ReadDir(s.cacheDir())
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		f, err := os.Open(filepath.Join(s.cacheDir(), e.Name()))
		if err != nil {
			continue
		}
		cf, err := v1.ParseConfigFile(f)
		f.Close()
		if err != nil {
			continue
		}
		for _, d := range cf.RootFS.DiffIDs {
			keep[d.Hex] = true
		}
	}
	return keep
}

// CachePruneResult says what PruneCache removed.
type CachePruneResult struct {
	Records   int
	Reclaimed int64
}

// PruneCache removes every build cache record, then the layers only they
// kept. It waits for writers (builds in progress) to finish.
func (s *Store) PruneCache() (*CachePruneResult, error) {
	unlock, err := s.lock("gc.lock", unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	res := &CachePruneResult{}
	ents, err := os.ReadDir(s.cacheDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		unlock()
		return nil, fmt.Errorf("prune build cache: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(s.cacheDir(), e.Name())
		if strings.HasSuffix(e.Name(), ".json") {
			res.Records++
		}
		res.Reclaimed += DirSize(p)
		if err := os.RemoveAll(p); err != nil {
			unlock()
			return nil, fmt.Errorf("prune build cache: %w", err)
		}
	}
	unlock()
	n, err := s.collect(true)
	res.Reclaimed += n
	return res, err
}

// CacheUsage counts the build cache records and the bytes of the layers
// only they keep (what PruneCache would free).
func (s *Store) CacheUsage() (records int, size int64, err error) {
	imgs, err := s.Images()
	if err != nil {
		return 0, 0, err
	}
	used := map[string]bool{}
	for _, img := range imgs {
		if cf, err := s.rawConfig(img.ID); err == nil {
			for _, d := range cf.RootFS.DiffIDs {
				used[d.Hex] = true
			}
		}
	}
	ents, _ := os.ReadDir(s.cacheDir())
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			records++
		}
	}
	for hex := range s.cacheLayers() {
		if !used[hex] {
			size += DirSize(filepath.Join(s.root, "layers", hex))
		}
	}
	return records, size, nil
}
