package builder

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/layers"
)

// tree is the merged view of an image's layers, as the union filesystem
// shows it: whiteouts and opaque directories applied. The builder reads it
// to follow Docker's rules for a COPY destination, to resolve --chown names
// from /etc/passwd, and to copy files out of another stage.
type tree struct {
	tars  []string
	idx   []*layers.Index
	files map[string]node // cleaned path ("." for the root)
}

type node struct {
	layer int
	e     *layers.Entry
}

func (n node) isDir() bool { return n.e.Typeflag == tar.TypeDir }

func loadTree(s *layers.Store, diffIDs []v1.Hash) (*tree, error) {
	t := &tree{files: map[string]node{}}
	for i, d := range diffIDs {
		idx, err := s.LayerEntries(d)
		if err != nil {
			return nil, err
		}
		t.tars = append(t.tars, s.LayerTar(d))
		t.idx = append(t.idx, idx)
		for j := range idx.Entries {
			e := &idx.Entries[j]
			dir, base := path.Split(e.Name)
			dir = strings.TrimSuffix(dir, "/")
			if dir == "" {
				dir = "."
			}
			switch {
			case base == ".wh..wh..opq":
				t.removeUnder(dir, i)
			case strings.HasPrefix(base, ".wh."):
				p := path.Join(dir, strings.TrimPrefix(base, ".wh."))
				delete(t.files, p)
				t.removeUnder(p, i)
			default:
				if old, ok := t.files[e.Name]; ok && old.isDir() && e.Typeflag != tar.TypeDir {
					t.removeUnder(e.Name, i)
				}
				t.files[e.Name] = node{layer: i, e: e}
			}
		}
	}
	return t, nil
}

// removeUnder drops what lower layers than layer have below dir.
func (t *tree) removeUnder(dir string, layer int) {
	prefix := dir + "/"
	if dir == "." {
		prefix = ""
	}
	for p, n := range t.files {
		if n.layer < layer && p != "." && strings.HasPrefix(p, prefix) {
			delete(t.files, p)
		}
	}
}

// resolve follows symbolic links in p (an absolute or root-relative path)
// inside the tree, as the kernel would with the tree as root; the last
// component is followed only with followLast. It returns the cleaned
// root-relative path and its node, if it exists.
func (t *tree) resolve(p string, followLast bool) (string, node, bool) {
	todo := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	cur := "."
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		n, ok := t.files[next]
		if ok && n.e.Typeflag == tar.TypeSymlink && (len(todo) > 0 || followLast) && hops < 40 {
			hops++
			target := n.e.Linkname
			if strings.HasPrefix(target, "/") {
				cur = "."
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		cur = next
	}
	n, ok := t.files[cur]
	return cur, n, ok
}

// under lists the paths below dir (not dir itself), sorted.
func (t *tree) under(dir string) []string {
	prefix := dir + "/"
	if dir == "." {
		prefix = ""
	}
	var out []string
	for p := range t.files {
		if p != "." && strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// open returns the contents of a regular file (or a hard link to one).
func (t *tree) open(n node) (io.ReadCloser, error) {
	e := n.e
	if e.Typeflag == tar.TypeLink {
		for i := range t.idx[n.layer].Entries {
			if t.idx[n.layer].Entries[i].Name == e.Linkname {
				e = &t.idx[n.layer].Entries[i]
				break
			}
		}
	}
	if e.Sparse {
		return nil, fmt.Errorf("%s is a sparse file: roost cannot copy it from an image yet", e.Name)
	}
	f, err := os.Open(t.tars[n.layer])
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, e.DataOffset, e.Size), f}, nil
}

// readFile reads a small file of the tree, following symbolic links.
func (t *tree) readFile(p string) ([]byte, error) {
	_, n, ok := t.resolve(p, true)
	if !ok || (n.e.Typeflag != tar.TypeReg && n.e.Typeflag != tar.TypeLink) {
		return nil, os.ErrNotExist
	}
	r, err := t.open(n)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

var errNotInTree = errors.New("no such file or directory")

func sortStrings(s []string) { sort.Strings(s) }
