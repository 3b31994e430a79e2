package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// writeZeroBomb writes a gzip-compressed tar holding one file of size zero
// bytes: a few megabytes that expand to size. A gzip file may be a series of
// members; all but the first are one compressed run of zeros, repeated.
func writeZeroBomb(t *testing.T, p string, size int64) {
	t.Helper()
	const run = 16 << 20
	size = size / run * run
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: size, ModTime: fixedTime, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Flush() // the header only: the data and the end of the archive are zeros too
	member := func(b []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(member(hdr.Bytes()))
	zeros := member(make([]byte, run))
	for n := int64(0); n < size; n += run {
		if _, err := f.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	f.Write(member(make([]byte, 1024))) // the two end-of-archive blocks
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDecompressionBomb: a small gzip layer that expands to 10 GiB of zeros
// is refused with one line once it would eat into the room the store keeps
// free, before the disk fills; the store is as it was.
func TestDecompressionBomb(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	busyboxImage(t, e, "keep:1")
	bomb := e.path("bomb.tar.gz")
	writeZeroBomb(t, bomb, 10<<30)
	if fi, err := os.Stat(bomb); err != nil || fi.Size() > 32<<20 {
		t.Fatalf("the bomb should be small: %v %v", fi.Size(), err)
	}
	// Keep all but 64 MiB of what is free now: the bomb must stop within
	// that, whatever the size of this machine's disk.
	var st unix.Statfs_t
	if err := unix.Statfs(e.Root, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free < 256<<20 {
		t.Fatalf("%s has %d MiB free; the test needs 256 MiB", e.Root, free>>20)
	}
	cfg := filepath.Join(e.ConfigHome, "roost", "config.toml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("min_free_space = \"%d\"\n", free-64<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	// import, load and pull store layers through the same guarded write.
	msg := e.fails("import", bomb, "bomb:1")
	if !strings.Contains(msg, "free") || !strings.Contains(msg, "min_free_space") {
		t.Errorf("import of the bomb: %q does not say the free space ran short", msg)
	}
	t.Logf("import of the bomb: %s", msg)
	e.wantUnchanged(before)
	if n := dirList(t, filepath.Join(e.Root, "tmp")); len(n) > 0 {
		t.Errorf("left in the store's tmp: %v", n)
	}
	e.ok("run", "--rm", "keep:1", "cat", "/etc/os-release")

	// A bad value is one line naming the key.
	if err := os.WriteFile(cfg, []byte("min_free_space = \"lots\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := e.fails("images"); !strings.Contains(msg, "min_free_space") {
		t.Errorf("bad min_free_space: %q", msg)
	}
}

// TestLayerSpecialEntries: device nodes and setuid bits of a layer are
// kept as the OCI layer spec says, seen as such through the union
// filesystem; a device node of the image opens nothing of the host.
func TestLayerSpecialEntries(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	es := busyboxEntries(t)
	for _, a := range []string{"stat", "head", "test"} {
		es = append(es, entry{name: "bin/" + a, typ: tar.TypeSymlink, linkname: "busybox"})
	}
	es = append(es,
		entry{name: "evil/", typ: tar.TypeDir},
		entry{name: "evil/mem", typ: tar.TypeChar, mode: 0o666},
		entry{name: "evil/sda", typ: tar.TypeBlock, mode: 0o666},
		entry{name: "evil/suid", body: "#!/bin/sh\n", mode: 0o4755},
		entry{name: "evil/sgid", body: "#!/bin/sh\n", mode: 0o2755},
		entry{name: "evil/hard", typ: tar.TypeLink, linkname: "evil/suid"},
	)
	p := e.path("special.tar")
	writeSpecialTar(t, p, es)
	e.importTar(p, "special:1")
	out := e.ok("run", "--rm", "special:1", "sh", "-c",
		"stat -c '%n %F %t:%T %a' /evil/mem /evil/sda; stat -c '%n %a %h' /evil/suid /evil/sgid /evil/hard; head -c 1 /evil/mem >/dev/null 2>&1 && echo mem-opened; head -c 1 /evil/sda >/dev/null 2>&1 && echo sda-opened; true")
	want := "/evil/mem character special file 1:1 666\n/evil/sda block special file 8:0 666\n/evil/suid 4755 2\n/evil/sgid 2755 1\n/evil/hard 4755 2\n"
	if out != want {
		t.Errorf("special entries through the union:\n%s\nwant:\n%s", out, want)
	}
}

// writeSpecialTar is writeTar with the device numbers of /evil/mem (1:1,
// the host's /dev/mem) and /evil/sda (8:0).
func writeSpecialTar(t *testing.T, p string, es []entry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range es {
		h := &tar.Header{Name: en.name, Typeflag: en.typ, Mode: en.mode, Linkname: en.linkname, ModTime: fixedTime, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			} else if h.Typeflag == tar.TypeSymlink {
				h.Mode = 0o777
			}
		}
		switch en.name {
		case "evil/mem":
			h.Devmajor, h.Devminor = 1, 1
		case "evil/sda":
			h.Devmajor, h.Devminor = 8, 0
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(en.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(en.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFull: with the storage root on a small filesystem (.ci/run mounts
// a 96 MiB tmpfs of the user's own and names it in ROOST_TEST_SMALLFS),
// import, load and pull of too much, and a container writing until the
// disk is full, fail with one clear line; afterwards the store is consistent: the
// earlier image is listed and runs, and prune works.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	small := os.Getenv("ROOST_TEST_SMALLFS")
	if small == "" {
		t.Fatal("ROOST_TEST_SMALLFS is not set: it names a small filesystem (64-128 MiB) the test user owns; .ci/run mounts a tmpfs for it (as root: mount -t tmpfs -o size=96m,uid=USER tmpfs DIR)")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(small, &st); err != nil {
		t.Fatalf("ROOST_TEST_SMALLFS=%s: %v", small, err)
	}
	if size := int64(st.Blocks) * st.Bsize; size > 256<<20 {
		t.Fatalf("ROOST_TEST_SMALLFS=%s is %d MiB; the test wants a small one (64-128 MiB)", small, size>>20)
	}
	root, err := os.MkdirTemp(small, "store-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	e := newRoost(t)
	e.Root = root
	img := runImage(t, e)

	// A layer larger than the filesystem, as a small gzip.
	big := e.path("big.tar.gz")
	writeZeroBomb(t, big, 256<<20)
	before := e.snapshot()
	msg := e.fails("import", big, "big:1")
	if !strings.Contains(msg, "free space") {
		t.Errorf("import of 256 MiB into %d MiB: %q", (int64(st.Blocks)*st.Bsize)>>20, msg)
	}
	e.wantUnchanged(before)
	// With no room kept free the filesystem itself fills: still one line.
	cfg := filepath.Join(e.ConfigHome, "roost", "config.toml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("min_free_space = \"0\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg = e.fails("import", big, "big:1")
	if !strings.Contains(msg, "no space left on device") {
		t.Errorf("import into a full filesystem: %q", msg)
	}
	e.wantUnchanged(before)
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	// load of an archive too large: made in a store of its own elsewhere.
	other := newRoost(t)
	other.importTar(big, "big:1")
	other.ok("save", "-o", e.path("big-archive.tar"), "big:1")
	msg = e.fails("load", "-i", e.path("big-archive.tar"))
	if !strings.Contains(msg, "free space") {
		t.Errorf("load of a 256 MiB image: %q", msg)
	}
	e.wantUnchanged(before)
	// pull of an image too large.
	reg := startRegistry(t, "")
	other.ok("tag", "big:1", reg.Host+"/test/big:1")
	other.ok("push", reg.Host+"/test/big:1")
	msg = e.fails("pull", reg.Host+"/test/big:1")
	if !strings.Contains(msg, "free space") {
		t.Errorf("pull of a 256 MiB image: %q", msg)
	}
	e.wantUnchanged(before)

	// A build whose RUN or COPY does not fit: one line naming the
	// Dockerfile line, no image, the store as it was.
	ctx := e.path("ctx")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(ctx, "big"))
	if err == nil {
		err = errors.Join(f.Truncate(200<<20), f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	e.ok("run", "--rm", img, "true") // the containers' lock file exists from here on
	before = e.snapshot()
	for _, df := range []string{
		"FROM " + img + "\nRUN dd if=/dev/zero of=/fill bs=1M count=200\n",
		"FROM " + img + "\nCOPY big /big\n",
	} {
		if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
		// A failing RUN shows its last output lines (with -q on stderr),
		// then roost's one line.
		r := e.run("build", "-q", "-t", "full:1", ctx)
		ls := lines(r.stderr)
		if r.code != 125 || len(ls) == 0 || !strings.HasPrefix(ls[len(ls)-1], "roost: Dockerfile:2:") {
			t.Errorf("build on a full disk (%q): want exit 125 and a last line naming Dockerfile:2, got %s", df, r)
		} else if strings.Contains(df, "COPY") {
			e.wantOneLineError(r)
		}
		e.wantUnchanged(before)
	}

	// A container that writes until the disk is full gets ENOSPC.
	r := e.run("run", "--name", "filler", img, "sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=200")
	if r.code == 0 || !strings.Contains(r.stderr, "No space left on device") {
		t.Errorf("a container writing 200 MiB into %d MiB: %s", (int64(st.Blocks)*st.Bsize)>>20, r)
	}
	// With the disk full, roost fails with one line or works.
	if r := e.run("import", e.path("runimage.tar"), "again:1"); r.code != 0 {
		e.wantOneLineError(r)
	}
	if r := e.run("run", "--rm", img, "true"); r.code != 0 {
		e.wantOneLineError(r)
	}
	// Once the container is gone the store works as before.
	e.ok("rm", "-f", "filler")
	if out := e.ok("images", "--format", "{{.Repository}}"); !strings.Contains(out, "busybox") {
		t.Errorf("images after the disk was full: %q", out)
	}
	if out := e.ok("run", "--rm", img, "cat", "/etc/os-release"); !strings.Contains(out, "roosttest") {
		t.Errorf("the earlier image after the disk was full: %q", out)
	}
	e.ok("image", "prune", "-f")
	e.ok("system", "prune", "-f")
	if n := dirList(t, filepath.Join(e.Root, "tmp")); len(n) > 0 {
		t.Errorf("left in the store's tmp after prune: %v", n)
	}
}
