package layers

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestBuildCache: a cache record keeps its layers through prune and is a
// miss once a layer is gone; PruneCache removes records and their layers.
func TestBuildCache(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	unlock, err := s.Writing()
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := s.PutLayer(bytes.NewReader(makeTar(t, file("f", "cached"))))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{d}}})
	key := strings.Repeat("ab", 32)
	if err := s.PutCache(key, cfg); err != nil {
		t.Fatal(err)
	}
	unlock()
	if err := s.PutCache("not-a-key", cfg); err == nil {
		t.Errorf("PutCache took a key that is no sha256")
	}
	if _, err := s.Prune(true); err != nil {
		t.Fatal(err)
	}
	if !s.HasLayer(d) {
		t.Fatalf("prune removed a layer the build cache keeps")
	}
	got, ok := s.Cache(key)
	if !ok || !bytes.Equal(got, cfg) {
		t.Fatalf("Cache(%s) = %s, %v", key, got, ok)
	}
	if n, size, err := s.CacheUsage(); err != nil || n != 1 || size == 0 {
		t.Errorf("CacheUsage = %d records, %d bytes, %v; want 1 and the layer's size", n, size, err)
	}
	res, err := s.PruneCache()
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1 || s.HasLayer(d) {
		t.Errorf("PruneCache removed %d records, layer still there: %v", res.Records, s.HasLayer(d))
	}
	if _, ok := s.Cache(key); ok {
		t.Errorf("a pruned record is still a hit")
	}
}
