package container

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"errors"

	units "github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/netns"
)

// CreateOptions are `run`/`create` flags, as the user gave them.
type CreateOptions struct {
	// ID is the container's ID, or "" for a new one (NewID).
	ID         string
	Name       string
	Image      string // as the user named it
	ImageID    v1.Hash
	ImageCfg   *v1.ConfigFile
	Layers     []v1.Hash
	Cmd        []string
	Entrypoint *string
	Env        []string
	EnvFiles   []string
	Volumes    []string
	Mounts     []string
	Tmpfs      []string
	Workdir    string
	User       string
	GroupAdd   []string
	Hostname   string
	ReadOnly   bool
	Labels     []string
	StopSignal string
	// StopTimeout is -1 when not given.
	StopTimeout int
	Ulimits     []string
	CapAdd      []string
	CapDrop     []string
	SecurityOpt []string
	Devices     []string
	Init        bool
	Userns      string
	Interactive bool
	Tty         bool
	AutoRemove  bool
	Network     string
	AddHosts    []string
	DNS         []string
	DNSSearch   []string
	DNSOptions  []string
	// Links are --link name[:alias].
	Links   []string
	Restart string
	Mapping string
	// Memory, CPUs and PidsLimit are --memory, --cpus and --pids-limit.
	Memory    string
	CPUs      string
	PidsLimit int64
	// Publish are -p specs; PublishAll is -P.
	Publish    []string
	PublishAll bool
}

var volumeName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

// Create makes a container record from o and the image. Bad input is an
// error that says what is wrong; nothing is written then.
func (s *Store) Create(o CreateOptions) (*Container, error) {
	img := o.ImageCfg.Config
	if o.ID == "" {
		o.ID = NewID()
	}
	r := &Record{
		ID:        o.ID,
		Name:      o.Name,
		Created:   time.Now().UTC(),
		Image:     o.ImageID.String(),
		ImageName: o.Image,
		Mapping:   o.Mapping,
	}
	for _, l := range o.Layers {
		r.Layers = append(r.Layers, l.String())
	}
	cfg := Config{
		Hostname:     o.Hostname,
		User:         img.User,
		Tty:          o.Tty,
		OpenStdin:    o.Interactive,
		StdinOnce:    o.Interactive,
		AttachStdin:  o.Interactive,
		Image:        o.Image,
		WorkingDir:   img.WorkingDir,
		Entrypoint:   img.Entrypoint,
		Cmd:          img.Cmd,
		Labels:       map[string]string{},
		StopSignal:   img.StopSignal,
		ExposedPorts: img.ExposedPorts,
		Volumes:      img.Volumes,
	}
	if cfg.Hostname == "" {
		cfg.Hostname = r.ID[:12]
	}
	for k, v := range img.Labels {
		cfg.Labels[k] = v
	}
	for _, l := range o.Labels {
		k, v, _ := strings.Cut(l, "=")
		cfg.Labels[k] = v
	}
	if o.User != "" {
		cfg.User = o.User
	}
	if o.Workdir != "" {
		if !filepath.IsAbs(o.Workdir) {
			return nil, fmt.Errorf("the working directory %q is invalid: it needs to be an absolute path", o.Workdir)
		}
		cfg.WorkingDir = o.Workdir
	}
	if o.StopSignal != "" {
		if _, err := ParseSignal(o.StopSignal); err != nil {
			return nil, err
		}
		cfg.StopSignal = o.StopSignal
	}
	if o.StopTimeout >= 0 {
		t := o.StopTimeout
		cfg.StopTimeout = &t
	}
	if o.Entrypoint != nil {
		cfg.Entrypoint = nil
		if *o.Entrypoint != "" {
			cfg.Entrypoint = []string{*o.Entrypoint}
		}
		cfg.Cmd = nil
	}
	if len(o.Cmd) > 0 {
		cfg.Cmd = o.Cmd
	}
	argv := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command specified: the image %s has no CMD or ENTRYPOINT; give one after the image name", o.Image)
	}
	r.Path, r.Args = argv[0], argv[1:]
	env, err := buildEnv(img.Env, o, true)
	if err != nil {
		return nil, err
	}
	cfg.Env = append(env, "HOSTNAME="+cfg.Hostname)
	if o.Tty && !hasEnvKey(cfg.Env, "TERM") {
		cfg.Env = append(cfg.Env, "TERM=xterm")
	}
	hc := HostConfig{
		Binds:          o.Volumes,
		NetworkMode:    o.Network,
		AutoRemove:     o.AutoRemove,
		ReadonlyRootfs: o.ReadOnly,
		CapAdd:         o.CapAdd,
		CapDrop:        o.CapDrop,
		SecurityOpt:    o.SecurityOpt,
		GroupAdd:       o.GroupAdd,
		Init:           o.Init,
		UsernsMode:     o.Userns,
		DNS:            o.DNS,
		DNSSearch:      o.DNSSearch,
		DNSOptions:     o.DNSOptions,
	}
	if hc.NetworkMode == "" {
		hc.NetworkMode = "private"
	}
	switch hc.NetworkMode {
	case "private", "none", "host", "bridge", "default":
	default:
		ref, ok := strings.CutPrefix(hc.NetworkMode, "container:")
		if !ok {
			return nil, fmt.Errorf("network %s not found: roost knows private (the default), host, none and container:NAME", hc.NetworkMode)
		}
		t, err := s.Get(ref)
		if err != nil {
			return nil, fmt.Errorf("--network container:%s: %w", ref, err)
		}
		hc.NetworkMode = "container:" + t.ID
		for _, c := range []struct {
			set  bool
			what string
		}{{len(o.Publish) > 0 || o.PublishAll, "port publishing"}, {len(o.Links) > 0, "links"}, {len(o.AddHosts) > 0, "--add-host"},
			{len(o.DNS) > 0 || len(o.DNSSearch) > 0 || len(o.DNSOptions) > 0, "DNS settings"}, {o.Hostname != "", "--hostname"}} {
			if c.set {
				return nil, fmt.Errorf("conflicting options: %s and the container network mode", c.what)
			}
		}
	}
	for _, h := range o.AddHosts {
		name, ip, ok := strings.Cut(h, ":")
		if ok && ip == "host-gateway" && hc.NetworkMode != "host" {
			ip = netns.Gateway.String()
		} else if ok && ip == "host-gateway" {
			ip = "127.0.0.1"
		}
		if _, err := netip.ParseAddr(ip); !ok || name == "" || err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--add-host\" flag: want host:ip", h)
		}
		hc.ExtraHosts = append(hc.ExtraHosts, name+":"+ip)
	}
	for _, d := range o.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--dns\" flag: %s is not an ip address", d, d)
		}
	}
	for _, l := range o.Links {
		target, alias, _ := strings.Cut(l, ":")
		if alias == "" {
			alias = target
		}
		if hc.NetworkMode == "host" || hc.NetworkMode == "none" {
			return nil, fmt.Errorf("conflicting options: --link and --network %s", hc.NetworkMode)
		}
		t, err := s.Get(target)
		if err != nil {
			return nil, fmt.Errorf("could not get container for %s: %w", target, err)
		}
		r.Links = append(r.Links, Link{ID: t.ID, Name: t.Name, Alias: alias})
	}
	if o.Userns != "" && o.Userns != "keep-id" && o.Userns != "host" {
		return nil, fmt.Errorf("--userns %q is not supported: use keep-id", o.Userns)
	}
	for _, c := range append(append([]string{}, o.CapAdd...), o.CapDrop...) {
		if _, err := ParseCapability(c); err != nil {
			return nil, err
		}
	}
	hc.SecurityOpt = nil
	for _, so := range o.SecurityOpt {
		switch {
		case strings.HasPrefix(so, "seccomp=") || strings.HasPrefix(so, "seccomp:"):
			var err error
			if so, err = resolveSeccompOpt(so, o.CapAdd, o.CapDrop); err != nil {
				return nil, err
			}
		case !hasOpt([]string{so}, "no-new-privileges") && !strings.HasPrefix(so, "label"):
			return nil, fmt.Errorf("--security-opt %q is not supported: roost knows no-new-privileges and seccomp", so)
		}
		hc.SecurityOpt = append(hc.SecurityOpt, so)
	}
	for _, u := range o.Ulimits {
		ul, err := units.ParseUlimit(u)
		if err != nil {
			return nil, fmt.Errorf("invalid --ulimit %q: %w", u, err)
		}
		if _, ok := rlimitKnown[ul.Name]; !ok {
			return nil, fmt.Errorf("invalid --ulimit %q: unknown limit %s", u, ul.Name)
		}
		hc.Ulimits = append(hc.Ulimits, Ulimit{Name: ul.Name, Soft: ul.Soft, Hard: ul.Hard})
	}
	for _, d := range o.Devices {
		dev, err := parseDevice(d)
		if err != nil {
			return nil, err
		}
		hc.Devices = append(hc.Devices, dev)
	}
	if o.Restart != "" {
		rp, err := parseRestart(o.Restart)
		if err != nil {
			return nil, err
		}
		if rp.Name != "no" && o.AutoRemove {
			return nil, errors.New("conflicting options: --restart and --rm")
		}
		hc.RestartPolicy = rp
	}
	for _, p := range o.Publish {
		ms, err := netns.ParsePortSpec(p)
		if err != nil {
			return nil, err
		}
		r.Ports = append(r.Ports, ms...)
	}
	if o.PublishAll {
		ms, err := netns.ExposedPorts(img.ExposedPorts)
		if err != nil {
			return nil, err
		}
		r.Ports = append(r.Ports, ms...)
	}
	if len(r.Ports) > 0 {
		switch hc.NetworkMode {
		case "none":
			return nil, errors.New("conflicting options: port publishing and --network none")
		case "host":
			r.Ports = nil // as Docker: published ports are discarded on the host network
		}
	}
	for _, m := range r.Ports {
		if m.HostPort != 0 && m.HostPort < netns.UnprivilegedPortStart() {
			return nil, fmt.Errorf("cannot publish host port %d: it is below net.ipv4.ip_unprivileged_port_start (%d): use a port of %d or more, or ask an administrator to lower that sysctl", m.HostPort, netns.UnprivilegedPortStart(), netns.UnprivilegedPortStart())
		}
	}
	if o.Memory != "" {
		n, err := units.RAMInBytes(o.Memory)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("invalid --memory %q: want a size such as 256m", o.Memory)
		}
		hc.Memory = n
	}
	if o.CPUs != "" {
		f, err := strconv.ParseFloat(o.CPUs, 64)
		if err != nil || f <= 0 {
			return nil, fmt.Errorf("invalid --cpus %q: want a positive number such as 0.5", o.CPUs)
		}
		hc.NanoCpus = int64(f * 1e9)
	}
	if o.PidsLimit < 0 {
		return nil, fmt.Errorf("invalid --pids-limit %d", o.PidsLimit)
	}
	hc.PidsLimit = o.PidsLimit
	r.Config, r.HostConfig = cfg, hc
	mounts, err := s.parseMounts(o, img.Volumes, r.ID)
	if err != nil {
		return nil, err
	}
	r.Mounts = mounts
	for _, m := range r.Mounts {
		if m.Type == "volume" {
			if err := os.MkdirAll(m.Source, 0o755); err != nil {
				return nil, fmt.Errorf("create volume %s: %w", m.Name, err)
			}
		}
	}
	if err := s.create(r); err != nil {
		for _, m := range r.Mounts {
			if m.Anonymous {
				os.RemoveAll(filepath.Dir(m.Source))
			}
		}
		return nil, err
	}
	return s.withState(r), nil
}

var rlimitKnown = map[string]bool{"core": true, "cpu": true, "data": true, "fsize": true, "locks": true, "memlock": true,
	"msgqueue": true, "nice": true, "nofile": true, "nproc": true, "rss": true, "rtprio": true, "rttime": true,
	"sigpending": true, "stack": true, "as": true}

// ReadEnv reads -e values and --env-file files into KEY=VALUE pairs (a bare
// KEY takes the caller's value, or is left out).
func ReadEnv(env, files []string) ([]string, error) {
	return buildEnv(nil, CreateOptions{Env: env, EnvFiles: files}, false)
}

// buildEnv merges the image's environment with -e and --env-file; with
// defaultPath, a PATH is added when none is set.
func buildEnv(imageEnv []string, o CreateOptions, defaultPath bool) ([]string, error) {
	env := append([]string{}, imageEnv...)
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		for i, e := range env {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				env[i] = kv
				return
			}
		}
		env = append(env, kv)
	}
	add := func(kv string) {
		if strings.Contains(kv, "=") {
			set(kv)
		} else if v, ok := os.LookupEnv(kv); ok {
			set(kv + "=" + v)
		}
	}
	for _, f := range o.EnvFiles {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("read env file: %w", err)
		}
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, "=") {
				fh.Close()
				return nil, fmt.Errorf("env file %s:%d: variable without a name", f, n)
			}
			add(line)
		}
		fh.Close()
	}
	for _, e := range o.Env {
		if strings.HasPrefix(e, "=") {
			return nil, fmt.Errorf("invalid environment variable %q: no name", e)
		}
		add(e)
	}
	if defaultPath && !hasEnvKey(env, "PATH") {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	return env, nil
}

func hasEnvKey(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// VolumeDir is where the data of volume name lives.
func (s *Store) VolumeDir(name string) string { return filepath.Join(s.volumes, name, "_data") }

// parseMounts turns -v, --mount, --tmpfs and the image's VOLUMEs into mounts.
func (s *Store) parseMounts(o CreateOptions, imageVolumes map[string]struct{}, id string) ([]Mount, error) {
	var out []Mount
	seen := map[string]bool{}
	add := func(m Mount) error {
		m.Destination = filepath.Clean(m.Destination)
		if !filepath.IsAbs(m.Destination) {
			return fmt.Errorf("invalid mount destination %q: it must be an absolute path", m.Destination)
		}
		if seen[m.Destination] {
			return fmt.Errorf("duplicate mount point: %s", m.Destination)
		}
		seen[m.Destination] = true
		if m.Mode == "" && !m.RW {
			m.Mode = "ro"
		}
		out = append(out, m)
		return nil
	}
	source := func(src, spec string) (Mount, error) {
		if filepath.IsAbs(src) {
			abs, err := filepath.EvalSymlinks(src)
			if err != nil {
				return Mount{}, fmt.Errorf("invalid volume %q: bind source path does not exist: %s", spec, src)
			}
			return Mount{Type: "bind", Source: abs}, nil
		}
		if strings.HasPrefix(src, ".") || strings.Contains(src, "/") {
			return Mount{}, fmt.Errorf("invalid volume %q: a bind source must be an absolute path, and %q is no volume name", spec, src)
		}
		if !volumeName().MatchString(src) {
			return Mount{}, fmt.Errorf("invalid volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", src)
		}
		return Mount{Type: "volume", Name: src, Source: s.VolumeDir(src)}, nil
	}
	for _, v := range o.Volumes {
		parts := strings.Split(v, ":")
		var m Mount
		var err error
		switch len(parts) {
		case 1:
			m = anonymous(s, id, v)
		case 2, 3:
			if parts[0] == "" || parts[1] == "" {
				return nil, fmt.Errorf("invalid volume specification %q: want SRC:DST[:ro]", v)
			}
			if m, err = source(parts[0], v); err != nil {
				return nil, err
			}
			m.Destination = parts[1]
			m.RW = true
			if len(parts) == 3 {
				for _, opt := range strings.Split(parts[2], ",") {
					switch opt {
					case "ro":
						m.RW = false
					case "rw", "z", "Z", "":
					default:
						return nil, fmt.Errorf("invalid volume specification %q: unknown option %q (want ro or rw)", v, opt)
					}
				}
				m.Mode = parts[2]
			}
		default:
			return nil, fmt.Errorf("invalid volume specification %q: want SRC:DST[:ro]", v)
		}
		if err := add(m); err != nil {
			return nil, err
		}
	}
	for _, spec := range o.Mounts {
		m := Mount{RW: true}
		typ := "volume"
		for _, f := range strings.Split(spec, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "type":
				typ = v
			case "source", "src":
				m.Source = v
			case "target", "destination", "dst":
				m.Destination = v
			case "readonly", "ro":
				m.RW = v == "false" || v == "0"
			case "tmpfs-size":
				m.Options = joinOpt(m.Options, "size="+v)
			case "tmpfs-mode":
				m.Options = joinOpt(m.Options, "mode="+v)
			case "bind-propagation", "consistency", "volume-nocopy":
			default:
				return nil, fmt.Errorf("invalid --mount %q: unknown field %q", spec, k)
			}
		}
		if m.Destination == "" {
			return nil, fmt.Errorf("invalid --mount %q: target is required", spec)
		}
		switch typ {
		case "bind":
			if m.Source == "" {
				return nil, fmt.Errorf("invalid --mount %q: source is required for a bind mount", spec)
			}
			src, err := source(m.Source, spec)
			if err != nil {
				return nil, err
			}
			if src.Type != "bind" {
				return nil, fmt.Errorf("invalid --mount %q: a bind source must be an absolute path", spec)
			}
			m.Type, m.Source = "bind", src.Source
		case "volume":
			if m.Source == "" {
				a := anonymous(s, id, m.Destination)
				m.Type, m.Name, m.Source, m.Anonymous = a.Type, a.Name, a.Source, true
			} else {
				src, err := source(m.Source, spec)
				if err != nil {
					return nil, err
				}
				m.Type, m.Name, m.Source = "volume", src.Name, src.Source
			}
		case "tmpfs":
			m.Type, m.Source = "tmpfs", "tmpfs"
		default:
			return nil, fmt.Errorf("invalid --mount %q: type must be bind, volume or tmpfs", spec)
		}
		if err := add(m); err != nil {
			return nil, err
		}
	}
	for _, t := range o.Tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		if err := add(Mount{Type: "tmpfs", Source: "tmpfs", Destination: dst, RW: true, Options: opts}); err != nil {
			return nil, err
		}
	}
	var vols []string
	for v := range imageVolumes {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	for _, v := range vols {
		if !seen[filepath.Clean(v)] {
			if err := add(anonymous(s, id, v)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func anonymous(s *Store, id, dst string) Mount {
	name := NewID()
	return Mount{Type: "volume", Name: name, Source: s.VolumeDir(name), Destination: dst, RW: true, Anonymous: true}
}

func joinOpt(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

func parseDevice(d string) (Device, error) {
	parts := strings.Split(d, ":")
	dev := Device{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
	if len(parts) > 1 && strings.HasPrefix(parts[1], "/") {
		dev.PathInContainer = parts[1]
	}
	if len(parts) > 1 && !strings.HasPrefix(parts[len(parts)-1], "/") {
		dev.CgroupPermissions = parts[len(parts)-1]
	}
	if len(parts) > 3 || !filepath.IsAbs(dev.PathOnHost) {
		return dev, fmt.Errorf("invalid --device %q: want /dev/HOST[:/dev/CONTAINER][:rwm]", d)
	}
	f, err := os.OpenFile(dev.PathOnHost, os.O_RDONLY, 0)
	if err != nil {
		return dev, fmt.Errorf("--device %s: %w", dev.PathOnHost, unwrap(err))
	}
	f.Close()
	return dev, nil
}

func unwrap(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// parseRestart reads --restart: no, always, unless-stopped, on-failure[:max].
func parseRestart(s string) (RestartPolicy, error) {
	name, max, hasMax := strings.Cut(s, ":")
	switch name {
	case "no", "always", "unless-stopped":
		if hasMax {
			return RestartPolicy{}, fmt.Errorf("invalid --restart %q: only on-failure takes a maximum retry count", s)
		}
		return RestartPolicy{Name: name}, nil
	case "on-failure":
		p := RestartPolicy{Name: name}
		if hasMax {
			n, err := strconv.Atoi(max)
			if err != nil || n < 0 {
				return p, fmt.Errorf("invalid --restart %q: the maximum retry count must be a number", s)
			}
			p.MaximumRetryCount = n
		}
		return p, nil
	}
	return RestartPolicy{}, fmt.Errorf("invalid --restart %q: use no, always, unless-stopped or on-failure[:max]", s)
}
