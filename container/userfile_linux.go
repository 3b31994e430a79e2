//go:build linux

package container

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/sys/user"
	"github.com/roost-containers/roost/fuse"
)

// imageFile reads a small file of the container's root without going through
// the union mount (the agent serves that mount and must not read it): from
// the writable layer's upper directory when it has the file, else from the
// highest layer that has it, honouring whiteouts. A deletion recorded only in
// the writable layer's metadata is not seen; then the image's file is read.
func imageFile(writable string, lowers []fuse.Lower, name string) ([]byte, error) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if b, err := os.ReadFile(filepath.Join(writable, "upper", name)); err == nil {
		return b, nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	for i := len(lowers) - 1; i >= 0; i-- {
		var found *tar.Header
		var offset int64
		for _, e := range lowers[i].Index.Entries {
			switch e.Name {
			case name:
				if e.Typeflag == tar.TypeReg {
					found = &tar.Header{Size: e.Size}
					offset = e.DataOffset
				} else {
					found = nil
				}
			case path.Join(dir, ".wh."+base), path.Join(dir, ".wh..wh..opq"):
				if found == nil {
					return nil, os.ErrNotExist
				}
			}
		}
		if found == nil {
			continue
		}
		f, err := os.Open(lowers[i].Tar)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b := make([]byte, found.Size)
		if _, err := f.ReadAt(b, offset); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return b, nil
	}
	return nil, os.ErrNotExist
}

// lookupUser resolves -u the way init will, from the image's files.
func lookupUser(spec string, read func(string) ([]byte, error)) (*user.ExecUser, error) {
	passwd, _ := read("/etc/passwd")
	group, _ := read("/etc/group")
	return user.GetExecUser(spec, &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}, bytes.NewReader(passwd), bytes.NewReader(group))
}
