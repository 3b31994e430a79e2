//go:build linux

package container

import (
	"os"
	"path/filepath"
	"testing"
)

// TestUserFiles: the agent reads the image's user database as init would
// see it, or leaves it to init where a mount may cover it.
func TestUserFiles(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/share/base"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// /etc/passwd is an absolute symlink: it resolves inside the root.
	if err := os.WriteFile(filepath.Join(root, "usr/share/base/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/share/base/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "config")); err != nil {
		t.Fatal(err)
	}
	f := userFiles(root, &InitSpec{Mounts: []InitMount{{Destination: "/data"}}})
	if f == nil || string(f.Passwd) != "root:x:0:0::/root:/bin/sh\n" || f.Group != nil {
		t.Fatalf("userFiles = %+v, want the passwd behind the symlink and no group", f)
	}
	for _, in := range []InitSpec{
		{Mounts: []InitMount{{Destination: "/etc"}}},
		{Mounts: []InitMount{{Destination: "/etc/group"}}},
		{Mounts: []InitMount{{Destination: "/"}}},
		{Mounts: []InitMount{{Destination: "/config/"}}},   // a symlink to /etc
		{Mounts: []InitMount{{Destination: "/usr/share"}}}, // where passwd's symlink leads
		{Devices: []Device{{PathInContainer: "/etc/passwd"}}},
	} {
		if f := userFiles(root, &in); f != nil {
			t.Errorf("mounts %+v devices %+v: read %+v, want nil (init reads after its mounts)", in.Mounts, in.Devices, f)
		}
	}
}
