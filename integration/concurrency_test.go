package integration

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConcurrentImports runs 8 imports of different content at once while
// other roost processes list and prune the store in a loop: every command
// succeeds, no listing shows an image twice, and at the end every image is
// listed exactly once.
func TestConcurrentImports(t *testing.T) {
	t.Parallel()
	const n = 8
	e := newRoost(t)
	for i := 0; i < n; i++ {
		// A few MiB each, so that the imports overlap the listings.
		smallTar(t, e.path(fmt.Sprintf("%d.tar", i)), strings.Repeat(fmt.Sprintf("content %d\n", i), 400000))
	}
	// One identical layer imported four times under different tags as well.
	smallTar(t, e.path("same.tar"), "the same content")

	var (
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
		ids      = make([]string, n)
		sameIDs  = make([]string, 4)
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, a...))
	}
	stop := make(chan struct{})
	listings := 0
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := e.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
			if r.code != 0 {
				fail("images during imports: %s", r)
				continue
			}
			seen := map[string]bool{}
			for _, l := range lines(r.stdout) {
				if seen[l] {
					fail("images during imports lists %q twice:\n%s", l, r.stdout)
				}
				seen[l] = true
			}
			mu.Lock()
			listings++
			mu.Unlock()
		}
	}()
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r := e.run("image", "prune", "-f"); r.code != 0 {
				fail("image prune -f during imports: %s", r)
			}
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.run("import", e.path(fmt.Sprintf("%d.tar", i)), fmt.Sprintf("par-%d:1", i))
			if r.code != 0 {
				fail("import %d: %s", i, r)
				return
			}
			ids[i] = strings.TrimSpace(r.stdout)
		}()
	}
	for i := range sameIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.run("import", "--change", `CMD ["same"]`, e.path("same.tar"), fmt.Sprintf("same:%d", i))
			if r.code != 0 {
				fail("import of the same tar as same:%d: %s", i, r)
				return
			}
			sameIDs[i] = strings.TrimSpace(r.stdout)
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d listings ran during the imports", listings)
	if listings == 0 {
		t.Error("no images listing completed while the imports ran")
	}

	got := lines(e.ok("images", "--format", "{{.Repository}}:{{.Tag}}"))
	sort.Strings(got)
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("par-%d:1", i))
	}
	for i := range sameIDs {
		want = append(want, fmt.Sprintf("same:%d", i))
	}
	sort.Strings(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("images after the parallel imports (-want +got):\n%s", d)
	}
	distinct := map[string]bool{}
	for i, id := range ids {
		if id == "" {
			continue
		}
		if distinct[id] {
			t.Errorf("import %d printed an ID another import printed: %s", i, id)
		}
		distinct[id] = true
		if got := e.inspect(fmt.Sprintf("par-%d:1", i)).ID; got != id {
			t.Errorf("par-%d:1 is %s, its import printed %s", i, got, id)
		}
	}
	// Each import is its own image (its config records when it was made),
	// but the four imports of one tar share one layer.
	if got := len(e.imageIDs()); got != n+len(sameIDs) {
		t.Errorf("images -q lists %d images, want %d", got, n+len(sameIDs))
	}
	if got := len(e.dirNames("layers")); got != n+1 {
		t.Errorf("layers/ holds %d layers, want %d: one per distinct tar", got, n+1)
	}
	// Every image is whole.
	for i := 0; i < n; i++ {
		e.ok("save", "-o", e.path(fmt.Sprintf("saved-%d.tar", i)), fmt.Sprintf("par-%d:1", i))
	}
}
