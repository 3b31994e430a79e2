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

// TestCoveredByInit: a mount of init covers a path at its target or under
// it, resolved inside the root; elsewhere the agent may do the work.
func TestCoveredByInit(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "config")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   InitSpec
		want bool
	}{
		{InitSpec{}, false},
		{InitSpec{Mounts: []InitMount{{Destination: "/data"}}}, false},
		{InitSpec{Mounts: []InitMount{{Destination: "/etc/myapp"}}}, false},
		{InitSpec{Mounts: []InitMount{{Destination: "/etc"}}}, true},
		{InitSpec{Mounts: []InitMount{{Destination: "/"}}}, true},
		{InitSpec{Mounts: []InitMount{{Destination: "/config"}}}, true},
		{InitSpec{Mounts: []InitMount{{Destination: "/etc/hosts"}}}, true},
		{InitSpec{Devices: []Device{{PathInContainer: "/etc/hosts"}}}, true},
	} {
		if got := coveredByInit(root, &tc.in, "/etc/hosts", "/etc/hostname"); got != tc.want {
			t.Errorf("mounts %+v devices %+v: covered %v, want %v", tc.in.Mounts, tc.in.Devices, got, tc.want)
		}
	}
}
