package layers

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ImportOptions says how to turn a root filesystem into an image.
type ImportOptions struct {
	// Source is a tar file (plain, gzip, bzip2 or zstd), a directory, or "-"
	// for Stdin.
	Source string
	Stdin  io.Reader
	// Tag, when set, is pointed at the new image.
	Tag *name.Tag
	// Changes are Dockerfile instructions applied to the config (docker import -c).
	Changes []string
	// Message becomes the history comment.
	Message string
	// Platform is os/arch[/variant]; empty means the host's.
	Platform string
}

// Import stores a root filesystem as a one-layer image and returns its ID.
// On any error the store holds no new image.
func (s *Store) Import(o ImportOptions) (v1.Hash, error) {
	cfg := v1.Config{}
	for _, c := range o.Changes {
		if err := ApplyChange(&cfg, c); err != nil {
			return v1.Hash{}, err
		}
	}
	plat := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if o.Platform != "" {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("parse platform %q: %w", o.Platform, err)
		}
		plat = *p
	}
	r, closeSrc, err := openSource(o.Source, o.Stdin)
	if err != nil {
		return v1.Hash{}, err
	}
	defer closeSrc()
	unlock, err := s.writing()
	if err != nil {
		return v1.Hash{}, err
	}
	defer unlock()
	diffID, _, err := s.PutLayer(r)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("import %s: %w", o.Source, err)
	}
	comment := o.Message
	if comment == "" {
		comment = "Imported from " + o.Source
	}
	now := time.Now().UTC()
	cf := v1.ConfigFile{
		Architecture: plat.Architecture,
		OS:           plat.OS,
		Variant:      plat.Variant,
		Created:      v1.Time{Time: now},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		History:      []v1.History{{Created: v1.Time{Time: now}, Comment: comment}},
	}
	b, err := json.Marshal(cf)
	if err != nil {
		return v1.Hash{}, err
	}
	var tags []name.Tag
	if o.Tag != nil {
		tags = append(tags, *o.Tag)
	}
	return s.AddImage(b, []LayerRef{{DiffID: diffID}}, tags)
}

// openSource opens a file, directory or "-" as an uncompressed tar stream.
func openSource(src string, stdin io.Reader) (io.Reader, func(), error) {
	if src == "-" {
		r, err := Decompress(stdin)
		return r, func() {}, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", src, unwrapPathError(err))
	}
	if fi.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarDirectory(pw, src)) }()
		return pr, func() { pr.Close() }, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", src, unwrapPathError(err))
	}
	r, err := Decompress(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read %s: %w", src, err)
	}
	return r, func() { f.Close() }, nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Decompress returns r's contents, decompressed when they start with the
// magic bytes of gzip, bzip2, xz or zstd.
func Decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return xz.NewReader(br)
	}
	return br, nil
}

// tarDirectory writes the tree at dir as a tar stream. Files the caller owns
// become root's, as they are inside a rootless container.
func tarDirectory(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	uid, gid := os.Getuid(), os.Getgid()
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() && rel != "." {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if hdr.Uid == uid {
				hdr.Uid = 0
			}
			if hdr.Gid == gid {
				hdr.Gid = 0
			}
			if fi.Mode().IsRegular() && st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					inodes[st.Ino] = hdr.Name
				}
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	return tw.Close()
}
