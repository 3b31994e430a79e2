package builder

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/roost-containers/roost/layers"
)

// FuzzBuild builds arbitrary Dockerfiles (no RUN: there is no container
// store) over an empty context; it must fail cleanly or succeed, never
// panic. Seeds: testdata/*.Dockerfile.
func FuzzBuild(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.Dockerfile")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	noNet := &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) { return nil, errors.New("no network in the fuzz test") })}
	f.Fuzz(func(t *testing.T, df []byte) {
		s, err := layers.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		o := Options{ContextDir: t.TempDir(), DockerfileData: df, Images: s, Out: io.Discard, HTTP: noNet,
			Base: func(ref, platform string) (*layers.Image, error) { return s.Resolve(ref) }}
		type result struct {
			res *Result
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := Build(context.Background(), o)
			done <- result{res, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("Build has not returned after 20s for %q", df)
		}
		res, err := r.res, r.err
		if err == nil {
			if _, _, err := s.Config(res.ID); err != nil {
				t.Errorf("built %s, but its config: %v", res.ID, err)
			}
		}
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
