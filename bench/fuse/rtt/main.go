// Command rtt measures what one FUSE request costs on this machine, the floor
// under any FUSE union: it mounts a go-fuse filesystem that answers from
// memory (no union, no disk) and times, against the same files on tmpfs,
// stat with the attribute cache off (one GETATTR per call) and reading every
// file of a tree once (what `tar -c` does: LOOKUP, OPEN, READ, RELEASE per
// file on a fresh mount). It also tries what would take the reads off
// FUSE, FUSE passthrough (kernel 6.9+): registering a backing file, which
// the kernel allows only with CAP_SYS_ADMIN in the initial user namespace.
//
//	go build -o /tmp/rtt ./bench/fuse/rtt && unshare -Urm /tmp/rtt [-files 20000]
//
// (a user namespace with its own mount namespace may mount FUSE; /dev/fuse
// must be writable by the user).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	files := flag.Int("files", 20000, "files in the tree")
	size := flag.Int("size", 4096, "bytes per file")
	stats := flag.Int("stats", 100000, "stat calls")
	flag.Parse()
	if err := run(*files, *size, *stats); err != nil {
		fmt.Fprintln(os.Stderr, "rtt:", err)
		os.Exit(1)
	}
}

// tree is a root directory of 100 directories holding the files.
type tree struct {
	fs.Inode
	files, size int
}

func (t *tree) OnAdd(ctx context.Context) {
	data := make([]byte, t.size)
	for i := range data {
		data[i] = byte(i)
	}
	for d := range 100 {
		dir := t.NewPersistentInode(ctx, &fs.Inode{}, fs.StableAttr{Mode: syscall.S_IFDIR})
		t.AddChild(fmt.Sprint(d), dir, false)
		for f := d; f < t.files; f += 100 {
			file := t.NewPersistentInode(ctx, &fs.MemRegularFile{Data: data, Attr: fuse.Attr{Mode: 0o644}}, fs.StableAttr{})
			dir.AddChild(fmt.Sprint(f), file, false)
		}
	}
}

func run(files, size, stats int) error {
	base, err := os.MkdirTemp("", "rtt-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	mnt, native := filepath.Join(base, "fuse"), filepath.Join(base, "tmpfs")
	for _, d := range []string{mnt, native} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount("tmpfs", native, "tmpfs", 0, ""); err != nil {
		return fmt.Errorf("mount tmpfs (run under unshare -Urm): %w", err)
	}
	defer syscall.Unmount(native, syscall.MNT_DETACH)
	data := make([]byte, size)
	for d := range 100 {
		os.Mkdir(filepath.Join(native, fmt.Sprint(d)), 0o755)
	}
	for f := range files {
		if err := os.WriteFile(filepath.Join(native, fmt.Sprint(f%100), fmt.Sprint(f)), data, 0o644); err != nil {
			return err
		}
	}

	zero, hour := time.Duration(0), time.Hour
	mount := func(attr *time.Duration) (*fuse.Server, error) {
		return fs.Mount(mnt, &tree{files: files, size: size}, &fs.Options{
			EntryTimeout: &hour, AttrTimeout: attr,
			MountOptions: fuse.MountOptions{DirectMountStrict: true, FsName: "rtt", MaxReadAhead: 1 << 20},
		})
	}

	// stat with no attribute cache: one GETATTR each.
	srv, err := mount(&zero)
	if err != nil {
		return fmt.Errorf("mount fuse: %w", err)
	}
	var st syscall.Stat_t
	one := filepath.Join(mnt, "0", "0")
	statLoop := func(p string) time.Duration {
		syscall.Stat(p, &st)
		t0 := time.Now()
		for range stats {
			syscall.Stat(p, &st)
		}
		return time.Since(t0) / time.Duration(stats)
	}
	fuseStat := statLoop(one)
	srv.Unmount()
	nativeStat := statLoop(filepath.Join(native, "0", "0"))

	// Read every file once, on a fresh mount (attributes cached as roost's
	// union caches them).
	readAll := func(root string) (time.Duration, error) {
		buf := make([]byte, 1<<16)
		t0 := time.Now()
		for d := range 100 {
			ents, err := os.ReadDir(filepath.Join(root, fmt.Sprint(d)))
			if err != nil {
				return 0, err
			}
			for _, e := range ents {
				fd, err := syscall.Open(filepath.Join(root, fmt.Sprint(d), e.Name()), syscall.O_RDONLY, 0)
				if err != nil {
					return 0, err
				}
				syscall.Fstat(fd, &st)
				for {
					n, err := syscall.Read(fd, buf)
					if n <= 0 || err != nil {
						break
					}
				}
				syscall.Fstat(fd, &st)
				syscall.Close(fd)
			}
		}
		return time.Since(t0), nil
	}
	if srv, err = mount(&hour); err != nil {
		return fmt.Errorf("mount fuse: %w", err)
	}
	fuseRead, err := readAll(mnt)
	srv.Unmount()
	if err != nil {
		return err
	}
	nativeRead, err := readAll(native)
	if err != nil {
		return err
	}
	// FUSE passthrough: register a backing file on a live connection.
	if srv, err = mount(&hour); err != nil {
		return fmt.Errorf("mount fuse: %w", err)
	}
	f, err := os.Open(filepath.Join(native, "0", "0"))
	if err != nil {
		return err
	}
	id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	passthrough := fmt.Sprintf("backing file registered (id %d)", id)
	if errno != 0 {
		passthrough = fmt.Sprintf("registering a backing file fails: %v", errno)
	} else {
		srv.UnregisterBackingFd(id)
	}
	f.Close()
	srv.Unmount()

	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	fmt.Printf("FUSE passthrough (kernel %s, uid_map %q): %s\n", release(), strings.Join(strings.Fields(string(uidMap)), " "), passthrough)
	fmt.Printf("stat, no attribute cache: fuse %.1f µs, tmpfs %.2f µs per call: one FUSE request ≈ %.1f µs\n",
		us(fuseStat), us(nativeStat), us(fuseStat-nativeStat))
	fmt.Printf("read %d files of %d bytes once (readdir, open, fstat, read, fstat, close): fuse %.3f s, tmpfs %.3f s: %.1f µs more per file\n",
		files, size, fuseRead.Seconds(), nativeRead.Seconds(), us((fuseRead-nativeRead)/time.Duration(files)))
	return nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func release() string {
	var u syscall.Utsname
	syscall.Uname(&u)
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
