package builder

import (
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext is the directory COPY and ADD read from, with the
// .dockerignore patterns that hide files from them.
type buildContext struct {
	dir    string
	ignore *patternmatcher.PatternMatcher
	// memo remembers content hashes by path and stat data, so that a
	// cached rebuild reads no file that did not change.
	memo      map[string]memoEntry
	memoFile  string
	memoDirty bool
}

type memoEntry struct {
	Ino, Size, Mtime, Ctime int64
	Sum                     [32]byte
}

func openContext(dir, memoFile string) (*buildContext, error) {
	c := &buildContext{dir: dir, memo: map[string]memoEntry{}, memoFile: memoFile}
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if err == nil {
		patterns, perr := ignorefile.ReadAll(f)
		f.Close()
		if perr != nil {
			return nil, fmt.Errorf("read .dockerignore: %w", perr)
		}
		if c.ignore, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf("read .dockerignore: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	if memoFile != "" {
		if mf, err := os.Open(memoFile); err == nil {
			gob.NewDecoder(mf).Decode(&c.memo)
			mf.Close()
		}
	}
	return c, nil
}

// saveMemo keeps the content hashes for the next build; losing them only
// costs time.
func (c *buildContext) saveMemo() {
	if !c.memoDirty || c.memoFile == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(c.memoFile), 0o700); err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(c.memoFile), ".memo-")
	if err != nil {
		return
	}
	err = gob.NewEncoder(f).Encode(c.memo)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || os.Rename(f.Name(), c.memoFile) != nil {
		os.Remove(f.Name())
	}
}

// ignored reports whether rel (slash-separated, relative to the context)
// is excluded by .dockerignore.
func (c *buildContext) ignored(rel string) bool {
	if c.ignore == nil || rel == "." {
		return false
	}
	m, _ := c.ignore.MatchesOrParentMatches(rel)
	return m
}

// skipDir reports whether nothing below the ignored directory rel can be
// included again by an exclusion pattern.
func (c *buildContext) skipDir(rel string) bool {
	if !c.ignored(rel) {
		return false
	}
	for _, p := range c.ignore.Patterns() {
		if p.Exclusion() {
			return false
		}
	}
	return true
}

// sources expands a COPY or ADD source (a path or a glob, relative to the
// context) to the slash-separated context paths it names, sorted.
func (c *buildContext) sources(src string) ([]string, error) {
	clean := path.Clean("/" + filepath.ToSlash(src))
	if raw := path.Clean(filepath.ToSlash(src)); raw == ".." || strings.HasPrefix(raw, "../") {
		return nil, fmt.Errorf("forbidden path outside the build context: %s", src)
	}
	rel := strings.TrimPrefix(clean, "/")
	if rel == "" {
		return []string{"."}, nil
	}
	var matches []string
	if strings.ContainsAny(rel, "*?[") {
		ms, err := filepath.Glob(filepath.Join(c.dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", src, err)
		}
		for _, m := range ms {
			// Glob follows links out of the context; keep what the
			// context itself has under that name.
			r, _ := filepath.Rel(c.dir, m)
			if p, err := c.resolve(r); err != nil {
				return nil, err
			} else if _, err := os.Lstat(p); err == nil {
				matches = append(matches, filepath.ToSlash(r))
			}
		}
	} else if p, err := c.resolve(rel); err != nil {
		return nil, err
	} else if _, err := os.Lstat(p); err == nil {
		matches = []string{rel}
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		if !c.ignored(m) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("file not found in build context or excluded by .dockerignore: %s", src)
	}
	sort.Strings(out)
	return out, nil
}

// resolve returns the host path of the context path rel with its symbolic
// links resolved inside the context, as if the context were the root (an
// absolute target starts at the context, ".." stops there), as Docker's
// FollowSymlinkInScope: a link in the context never reaches outside it.
func (c *buildContext) resolve(rel string) (string, error) {
	p, err := securejoin.SecureJoin(c.dir, filepath.FromSlash(rel))
	if err != nil {
		return "", fmt.Errorf("read build context: %s: %w", rel, err)
	}
	return p, nil
}

// contextFile is one file under a source, as COPY will write it.
type contextFile struct {
	rel  string // relative to the source ("." for the source itself)
	host string
	fi   fs.FileInfo
	link string
}

// walk lists the source rel and, when it is a directory, what is under
// it that .dockerignore leaves in, parents before children. The source
// itself is followed when it is a symbolic link, as Docker does.
func (c *buildContext) walk(rel string) ([]contextFile, error) {
	root, err := c.resolve(rel)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("read build context: %w", err)
	}
	out := []contextFile{{rel: ".", host: root, fi: fi}}
	if !fi.IsDir() {
		return out, nil
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		r, _ := filepath.Rel(root, p)
		crel := path.Join(rel, filepath.ToSlash(r))
		if c.ignored(crel) {
			if d.IsDir() && c.skipDir(crel) {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		cf := contextFile{rel: filepath.ToSlash(r), host: p, fi: info}
		if info.Mode()&fs.ModeSymlink != 0 {
			if cf.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out = append(out, cf)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read build context: %w", err)
	}
	return out, nil
}

// hashFiles writes what COPY would copy from files into h: names, types,
// modes, link targets and contents (not times or owners: COPY sets the
// owner, and a touched file with the same bytes is the same file).
func (c *buildContext) hashFiles(h io.Writer, files []contextFile) error {
	for _, f := range files {
		fmt.Fprintf(h, "%q %o %q", f.rel, f.fi.Mode(), f.link)
		if f.fi.Mode().IsRegular() {
			sum, err := c.fileSum(f.host, f.fi)
			if err != nil {
				return fmt.Errorf("read build context: %w", err)
			}
			h.Write(sum[:])
		}
		h.Write([]byte{'\n'})
	}
	return nil
}

func (c *buildContext) fileSum(p string, fi fs.FileInfo) ([32]byte, error) {
	st, _ := fi.Sys().(*syscall.Stat_t)
	var me memoEntry
	if st != nil {
		me = memoEntry{Ino: int64(st.Ino), Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
		if old, ok := c.memo[p]; ok && old.Ino == me.Ino && old.Size == me.Size && old.Mtime == me.Mtime && old.Ctime == me.Ctime {
			return old.Sum, nil
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	copy(me.Sum[:], h.Sum(nil))
	if st != nil {
		c.memo[p] = me
		c.memoDirty = true
	}
	return me.Sum, nil
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
