package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	p := write(t, `root = "/srv/roost"
runroot = "/run/r"
min_free_space = "10%"
[network]
default = "none"
resolver = "127.0.0.53:53"
client_address = true
proxy_ports = true
[registries]
insecure = ["localhost:5000"]
mirrors = { "docker.io" = ["https://mirror.example"] }
`)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Root:         "/srv/roost",
		RunRoot:      "/run/r",
		MinFreeSpace: "10%",
		Network:      Network{Default: "none", Resolver: "127.0.0.53:53", ClientAddress: true, ProxyPorts: true},
		Registries: Registries{
			Insecure: []string{"localhost:5000"},
			Mirrors:  map[string][]string{"docker.io": {"https://mirror.example"}},
		},
	}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("Load (-want +got):\n%s", d)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"unknown key", "root = \"/x\"\n\nbogus = 1\n", []string{":3:", "unknown key bogus"}},
		{"unknown nested key", "[network]\ndefault = \"host\"\nmode = \"x\"\n", []string{":3:", "unknown key network.mode"}},
		{"unknown table", "[netwrk]\ndefault = \"host\"\n", []string{":1:", "netwrk"}},
		{"type error", "root = \"/x\"\nruntoot = 3\n", []string{":2:", "runtoot"}},
		{"wrong type", "[registries]\ninsecure = \"localhost\"\n", []string{":2:", "insecure"}},
		{"bad network", "[network]\ndefault = \"bridge\"\n", []string{"network.default", "bridge"}},
		{"resolver without a port", "[network]\nresolver = \"127.0.0.53\"\n", []string{"network.resolver", "ip:port"}},
		{"relative root", "root = \"data\"\n", []string{"root", "absolute"}},
		{"bad min_free_space", "min_free_space = \"lots\"\n", []string{"min_free_space", "lots"}},
		{"syntax", "root = \n", []string{":1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.src)
			_, err := Load(p, true)
			if err == nil {
				t.Fatalf("Load(%q) succeeded, want an error", tc.src)
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.toml")
	if _, err := Load(p, false); err != nil {
		t.Errorf("missing default file: %v", err)
	}
	if _, err := Load(p, true); err == nil {
		t.Error("missing explicit file: no error")
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/data")
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	c := Default()
	if c.Root != "/data/roost" || c.Network.Default != "private" {
		t.Errorf("Default() = %+v", c)
	}
	if got := DefaultPath(); got != "/cfg/roost/config.toml" {
		t.Errorf("DefaultPath() = %q", got)
	}
}
