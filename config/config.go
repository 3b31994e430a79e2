// Package config owns roost's configuration file: its TOML shape, defaults and
// loading. Library packages never see TOML; cli/ turns a Config into their options.
//
// The file is $XDG_CONFIG_HOME/roost/config.toml (~/.config/roost/config.toml),
// or the path in ROOST_CONFIG or --config. A missing default file means
// defaults; a missing file that was asked for, an unknown key or a value of the
// wrong type is an error naming the file, line and key.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/roost-containers/roost/layers"
)

// Config is roost's configuration.
type Config struct {
	// Root is the storage root: images, layers, containers.
	Root string `toml:"root"`
	// RunRoot holds sockets, pid files and locks.
	RunRoot string `toml:"runroot"`
	// MinFreeSpace is the room pull, load and import leave free on the
	// storage root's filesystem: a size ("2GiB"), a share ("5%"), "0" for
	// none; empty is 5% of the filesystem, at most 1 GiB.
	MinFreeSpace string `toml:"min_free_space"`
	// Network holds networking defaults.
	Network Network `toml:"network"`
	// Registries holds registry settings.
	Registries Registries `toml:"registries"`
}

// Network holds networking defaults.
type Network struct {
	// Default is the --network mode when none is given: private, host or none.
	Default string `toml:"default"`
	// Resolver is the DNS server (host:port) that the private network's
	// forwarder asks; empty: the host's first nameserver in
	// /etc/resolv.conf.
	Resolver string `toml:"resolver"`
	// ClientAddress makes published ports of containers on the private
	// network arrive from the client's own address, through the user-mode
	// network, instead of from 127.0.0.1 by splice (faster).
	ClientAddress bool `toml:"client_address"`
	// ProxyPorts keeps every published port on the agent's proxy. By
	// default a TCP port the container's server binds itself is handed to
	// it as a host socket: no copy, the client's own address, but the
	// server's getsockname shows the host port.
	ProxyPorts bool `toml:"proxy_ports"`
}

// Registries holds registry settings.
type Registries struct {
	// Insecure registries are reached over plain HTTP (host or host:port).
	Insecure []string `toml:"insecure"`
	// Mirrors maps a registry host to mirrors tried before it.
	Mirrors map[string][]string `toml:"mirrors"`
}

// NetworkModes are the values Network.Default takes.
var NetworkModes = []string{"private", "host", "none"}

// Default returns the configuration used when no file sets a key.
func Default() Config {
	return Config{
		Root:    filepath.Join(dataHome(), "roost"),
		RunRoot: runtimeDir(),
		Network: Network{Default: "private"},
	}
}

func dataHome() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d
	}
	return filepath.Join(home(), ".local", "share")
}

func home() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/"
}

func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return filepath.Join(d, "roost")
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("roost-%d", os.Getuid()))
}

// DefaultPath is where the configuration file is looked for when neither
// --config nor ROOST_CONFIG names one.
func DefaultPath() string {
	d := os.Getenv("XDG_CONFIG_HOME")
	if d == "" {
		d = filepath.Join(home(), ".config")
	}
	return filepath.Join(d, "roost", "config.toml")
}

// Load reads the configuration at path over the defaults. When explicit is
// false a missing file is not an error.
func Load(path string, explicit bool) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		var pe toml.ParseError
		if ppe := (*toml.ParseError)(nil); errors.As(err, &ppe) {
			pe = *ppe
		}
		if errors.As(err, &pe) || pe.Message != "" {
			key := pe.LastKey
			if key == "" {
				key = "?"
			}
			return c, fmt.Errorf("config %s:%d: key %s: %s", path, pe.Position.Line, key, pe.Message)
		}
		if m := typeErr().FindStringSubmatch(err.Error()); m != nil {
			return c, fmt.Errorf("config %s:%s: key %s: %s", path, m[1], m[2], m[3])
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return c, fmt.Errorf("config %s:%d: unknown key %s", path, keyLine(string(b), k), k)
	}
	c.Root = expandHome(c.Root)
	c.RunRoot = expandHome(c.RunRoot)
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// typeErr matches the decoder's type errors, which carry no position field.
var typeErr = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^toml: line (\d+) \(last key "(.*?)"\): (.*)$`)
})

func (c Config) validate() error {
	ok := false
	for _, m := range NetworkModes {
		ok = ok || c.Network.Default == m
	}
	if !ok {
		return fmt.Errorf("key network.default: %q is not one of %s", c.Network.Default, strings.Join(NetworkModes, ", "))
	}
	if c.Network.Resolver != "" {
		if _, err := netip.ParseAddrPort(c.Network.Resolver); err != nil {
			return fmt.Errorf("key network.resolver: %q is not an ip:port", c.Network.Resolver)
		}
	}
	if !filepath.IsAbs(c.Root) {
		return fmt.Errorf("key root: %q must be an absolute path", c.Root)
	}
	if !filepath.IsAbs(c.RunRoot) {
		return fmt.Errorf("key runroot: %q must be an absolute path", c.RunRoot)
	}
	if _, err := layers.ParseReserve(c.MinFreeSpace); err != nil {
		return fmt.Errorf("key min_free_space: %w", err)
	}
	return nil
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home(), rest)
	}
	return p
}

// keyLine finds the line that defines key k: its table header or its last
// part followed by "=". It returns 0 when it cannot tell.
func keyLine(src string, k toml.Key) int {
	last := regexp.QuoteMeta(k[len(k)-1])
	table := regexp.QuoteMeta(strings.Join(k, "."))
	re := regexp.MustCompile(`^\s*(\[\[?\s*` + table + `\s*\]\]?|"?` + last + `"?\s*=)`)
	for i, line := range strings.Split(src, "\n") {
		if re.MatchString(line) {
			return i + 1
		}
	}
	return 0
}
