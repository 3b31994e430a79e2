package fuse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// attr is roost's metadata of one file of the writable layer: what the host
// file itself does not hold, because every host file is the user's own with
// fixed permissions (0600, directories 0700).
type attr struct {
	Mode   uint32            `json:"mode"` // st_mode: type and permission bits
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Rdev   uint64            `json:"rdev,omitempty"`
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
}

func (a *attr) clone() *attr {
	c := *a
	if a.Xattrs != nil {
		c.Xattrs = make(map[string][]byte, len(a.Xattrs))
		for k, v := range a.Xattrs {
			c.Xattrs[k] = v
		}
	}
	return &c
}

// Path flags of the writable layer.
const (
	flagWhiteout = 1 << iota // the path hides whatever the lower layers have there
	flagOpaque               // the directory hides the lower layers' children
)

// record is one line of the metadata journal. A line with Ino sets (or,
// with Attr nil, forgets) the attributes of the host file with that inode
// number; a line with Path sets (or, with Flags 0, clears) a path's flags.
// Later lines win.
type record struct {
	Ino   uint64 `json:"ino,omitempty"`
	Attr  *attr  `json:"attr,omitempty"`
	Path  string `json:"path,omitempty"`
	Flags int    `json:"flags,omitempty"`
}

// metaStore holds the writable layer's metadata in memory and appends every
// change to the journal file, so that it survives a crash of the serving
// process. Attributes are keyed by the host inode number of the upper file,
// which follows the file through renames and hard links. Its methods are not
// safe for concurrent use; the union serializes them.
type metaStore struct {
	attrs map[uint64]*attr
	flags map[string]int
	path  string
	f     *os.File
	err   error // first failed journal write
	dirty bool  // written since opened: close must sync
	// ephemeral journals are never synced (the layer goes after unmount).
	ephemeral bool
}

// openMeta reads the journal at path, drops attributes of inodes that no
// longer exist under upper, rewrites the journal compactly (temp file, fsync,
// rename) and opens it for appending.
func openMeta(path, upper string) (*metaStore, error) {
	m, err := loadMeta(path, upper)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		// A new writable layer (every `run --rm`): nothing to compact, and
		// no fsync on the start-up path.
		if m.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return nil, fmt.Errorf("create writable layer metadata: %w", err)
		}
		return m, nil
	}
	if err := m.compact(); err != nil {
		return nil, err
	}
	return m, nil
}

// loadMeta reads the journal at path without changing it.
func loadMeta(path, upper string) (*metaStore, error) {
	m := &metaStore{attrs: map[uint64]*attr{}, flags: map[string]int{}, path: path}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read writable layer metadata: %w", err)
	}
	if len(b) > 0 {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var r record
			if err := json.Unmarshal(line, &r); err != nil {
				// A torn last line after a crash; everything before it holds.
				break
			}
			m.apply(r)
		}
		live := map[uint64]bool{}
		err := filepath.WalkDir(upper, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			live[info.Sys().(*syscall.Stat_t).Ino] = true
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scan writable layer: %w", err)
		}
		for ino := range m.attrs {
			if !live[ino] {
				delete(m.attrs, ino)
			}
		}
	}
	return m, nil
}

func (m *metaStore) apply(r record) {
	switch {
	case r.Ino != 0 && r.Attr != nil:
		m.attrs[r.Ino] = r.Attr
	case r.Ino != 0:
		delete(m.attrs, r.Ino)
	case r.Path != "" && r.Flags != 0:
		m.flags[r.Path] = r.Flags
	case r.Path != "":
		delete(m.flags, r.Path)
	}
}

// compact writes the whole state to a new journal and switches to it.
func (m *metaStore) compact() error {
	tmp, err := os.CreateTemp(filepath.Dir(m.path), ".meta-")
	if err != nil {
		return fmt.Errorf("write writable layer metadata: %w", err)
	}
	w := bufio.NewWriter(tmp)
	enc := json.NewEncoder(w)
	inos := make([]uint64, 0, len(m.attrs))
	for ino := range m.attrs {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		err = errors.Join(err, enc.Encode(record{Ino: ino, Attr: m.attrs[ino]}))
	}
	paths := make([]string, 0, len(m.flags))
	for p := range m.flags {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		err = errors.Join(err, enc.Encode(record{Path: p, Flags: m.flags[p]}))
	}
	err = errors.Join(err, w.Flush(), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), m.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write writable layer metadata: %w", err)
	}
	if m.f != nil {
		m.f.Close()
	}
	m.f, err = os.OpenFile(m.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open writable layer metadata: %w", err)
	}
	return nil
}

func (m *metaStore) write(r record) {
	m.apply(r)
	m.dirty = !m.ephemeral
	b, err := json.Marshal(r)
	if err == nil {
		_, err = m.f.Write(append(b, '\n'))
	}
	if err != nil && m.err == nil {
		m.err = fmt.Errorf("append to writable layer metadata: %w", err)
	}
}

// setAttr records a; the store keeps a, so callers must not change it later.
func (m *metaStore) setAttr(ino uint64, a *attr) { m.write(record{Ino: ino, Attr: a}) }

// forget drops the attributes of a host inode that lost its last name from
// the journal. They stay in memory, where an open file still needs them; a
// new file that gets the same host inode number gets new attributes.
func (m *metaStore) forget(ino uint64) {
	if a, ok := m.attrs[ino]; ok {
		m.write(record{Ino: ino})
		m.attrs[ino] = a
	}
}

func (m *metaStore) setFlags(p string, flags int) {
	if m.flags[p] != flags {
		m.write(record{Path: p, Flags: flags})
	}
}

// clearTree clears the flags of p and, when tree is set (p is or was a
// directory), of everything below it. Only a directory costs a scan of all
// flags, so that removing or renaming many files stays linear.
func (m *metaStore) clearTree(p string, tree bool) {
	if _, ok := m.flags[p]; ok {
		m.write(record{Path: p})
	}
	if !tree {
		return
	}
	for q := range m.flags {
		if strings.HasPrefix(q, p+"/") {
			m.write(record{Path: q})
		}
	}
}

// moveTree moves the flags of p (and with tree, of everything below it) to
// the same paths under q; flags already there are cleared first.
func (m *metaStore) moveTree(p, q string, tree bool) {
	m.clearTree(q, tree)
	moved := map[string]int{}
	if f, ok := m.flags[p]; ok {
		moved[q] = f
		m.write(record{Path: p})
	}
	if tree {
		for x, f := range m.flags {
			if strings.HasPrefix(x, p+"/") {
				moved[q+x[len(p):]] = f
				m.write(record{Path: x})
			}
		}
	}
	for x, f := range moved {
		m.write(record{Path: x, Flags: f})
	}
}

// close syncs (when written to) and closes the journal and reports the first
// write error.
func (m *metaStore) close() error {
	err := m.err
	if m.f != nil {
		if m.dirty {
			err = errors.Join(err, m.f.Sync())
		}
		err = errors.Join(err, m.f.Close())
		m.f = nil
	}
	return err
}
