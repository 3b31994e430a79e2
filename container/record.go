package container

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roost-containers/roost/netns"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned (wrapped) for an unknown container.
var ErrNotFound = errors.New("no such container")

// ErrConflict is returned (wrapped) when a name is taken or a container is in
// a state that forbids the operation.
var ErrConflict = errors.New("conflict")

// Config is what runs, in Docker's terms.
type Config struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{} `json:",omitempty"`
	WorkingDir   string
	Entrypoint   []string
	Labels       map[string]string
	StopSignal   string `json:",omitempty"`
	StopTimeout  *int   `json:",omitempty"`
}

// Ulimit is one --ulimit.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// Device is one --device.
type Device struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string
}

// Link is one --link: the container ID (named Name when linked) reached
// as Alias.
type Link struct {
	ID, Name, Alias string
}

// RestartPolicy is --restart.
type RestartPolicy struct {
	Name              string
	MaximumRetryCount int
}

// HostConfig is how it runs, in Docker's terms.
type HostConfig struct {
	Binds          []string
	NetworkMode    string
	AutoRemove     bool
	RestartPolicy  RestartPolicy
	ReadonlyRootfs bool
	CapAdd         []string
	CapDrop        []string
	SecurityOpt    []string
	Ulimits        []Ulimit
	Tmpfs          map[string]string `json:",omitempty"`
	GroupAdd       []string
	Devices        []Device
	Init           bool
	UsernsMode     string
	ExtraHosts     []string
	DNS            []string `json:"Dns"`
	DNSSearch      []string `json:"DnsSearch"`
	DNSOptions     []string `json:"DnsOptions"`
	// Links are Docker's "/target:/container/alias", filled in by
	// inspect from Record.Links.
	Links []string `json:",omitempty"`
	// Memory (bytes), NanoCpus (CPUs × 1e9) and PidsLimit are the cgroup
	// v2 limits; 0 means none.
	Memory    int64
	NanoCpus  int64
	PidsLimit int64
}

// Mount is one filesystem mounted into the container.
type Mount struct {
	Type        string // bind, volume or tmpfs
	Name        string `json:",omitempty"` // the volume's name
	Source      string
	Destination string
	Mode        string
	RW          bool
	// Options are tmpfs mount options (size=, mode=).
	Options string `json:",omitempty"`
	// Anonymous volumes go with the container on rm -v.
	Anonymous bool `json:",omitempty"`
}

// Record is what the CLI writes about a container.
type Record struct {
	ID      string
	Name    string
	Created time.Time
	// Path and Args are the command as exec'd: entrypoint and cmd merged.
	Path string
	Args []string
	// Image is the image ID; ImageName the reference as the user gave it.
	Image     string
	ImageName string
	// Layers are the image's diff IDs, bottom first.
	Layers     []string
	Config     Config
	HostConfig HostConfig
	Mounts     []Mount
	// Mapping is the kind of id mapping: full, subid or single.
	Mapping string
	// Links are the --link targets.
	Links []Link `json:",omitempty"`
	// Ports are the -p and -P mappings as asked for (host port 0: any).
	Ports []netns.PortMapping `json:",omitempty"`
}

// State is what the agent writes about a running container.
type State struct {
	Status     string // created, running, paused, restarting, exited
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	// AgentPid is the agent's pid, for diagnostics.
	AgentPid int `json:",omitempty"`
	// PauseMethod says how the container was paused: "signals" (SIGSTOP to
	// every process) where no cgroup freezer was delegated.
	PauseMethod string `json:",omitempty"`
	// RestartCount is how often the restart policy restarted it.
	RestartCount int `json:",omitempty"`
	// Ports are the published ports as bound, while running.
	Ports []netns.PortMapping `json:",omitempty"`
}

// Container is a record with its current state.
type Container struct {
	Record
	State State
	// Dir is the container's directory.
	Dir string
}

// Store keeps container records under a storage root.
type Store struct {
	dir     string
	runRoot string
	volumes string
	// Resolver is the DNS server (host:port) that containers' private
	// networks forward queries to; empty: the host's first nameserver.
	Resolver string
	// ClientAddress delivers published ports of containers on the private
	// network from the client's address (see AgentSpec).
	ClientAddress bool
	// ProxyPorts keeps published ports on the proxy (see AgentSpec).
	ProxyPorts bool
}

// OpenStore returns the container store under the storage root; runRoot is
// the runtime directory for sockets.
func OpenStore(root, runRoot string) (*Store, error) {
	// Directories are made by the first write, so that reading leaves no trace.
	return &Store{dir: filepath.Join(root, "containers"), runRoot: runRoot, volumes: filepath.Join(root, "volumes")}, nil
}

// Dir is the directory of container id.
func (s *Store) Dir(id string) string { return filepath.Join(s.dir, id) }

// socketPath is the agent's control socket of container id. Unix socket
// paths are limited to 108 bytes: a runtime directory too deep for that
// gives way to a short one under the temp directory.
func (s *Store) socketPath(id string) string {
	p := filepath.Join(s.runRoot, id[:12], "ctl.sock")
	if len(p) < 100 {
		return p
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("roost-%d", os.Getuid()), "s", id[:12], "ctl.sock")
}

func (s *Store) lock() (func(), error) {
	for _, d := range []string{s.dir, s.volumes} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open container store: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "..", "containers.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock containers: %w", err)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock containers: %w", err)
	}
	return func() { f.Close() }, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			if err != nil {
				return os.NewSyscallError("flock", err)
			}
			return nil
		}
	}
}

// NewID returns a random container ID: 64 hex digits.
func NewID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var validName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

// create writes a new container record. An empty Name gets a random one; a
// taken name is an error wrapping ErrConflict.
func (s *Store) create(r *Record) error {
	if r.Name != "" && !validName().MatchString(r.Name) {
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", r.Name)
	}
	r.Name = strings.TrimPrefix(r.Name, "/")
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	all, err := s.records()
	if err != nil {
		return err
	}
	taken := map[string]string{}
	for _, c := range all {
		taken[c.Name] = c.ID
	}
	if r.Name == "" {
		for i := 0; ; i++ {
			r.Name = RandomName(i > 10)
			if _, ok := taken[r.Name]; !ok {
				break
			}
		}
	} else if id, ok := taken[r.Name]; ok {
		return fmt.Errorf("the container name %q is already in use by container %s (%w): remove or rename that container, or choose another name", r.Name, id[:12], ErrConflict)
	}
	dir := s.Dir(r.ID)
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o700); err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, recordFile), r); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("create container: %w", err)
	}
	return nil
}

// writeFileAtomic writes v as JSON to p: temp file, then rename, so that a
// reader never sees a torn file. It does not fsync: container records and
// states are not content addressed, and a start must not wait for the disk
// (after a power loss a container may show an older state, never a torn one).
func writeFileAtomic(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func readRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read container %s: %w", filepath.Base(dir), err)
	}
	return &r, nil
}

func (s *Store) records() ([]*Record, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []*Record
	for _, e := range ents {
		if !e.IsDir() || len(e.Name()) != 64 {
			continue
		}
		r, err := readRecord(filepath.Join(s.dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // being created or removed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// recordFile is a container's record in its directory. A directory
// without one is a container being created (under the store's lock) or
// removed (a --rm agent takes the record first: see agent.remove).
const recordFile = "config.json"

// RemoveLeftovers removes the directories of containers whose record is
// gone and whose agent is not running: what a crash left of a removal.
func (s *Store) RemoveLeftovers() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, e := range ents {
		dir := filepath.Join(s.dir, e.Name())
		if !e.IsDir() || len(e.Name()) != 64 || agentAlive(dir) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, recordFile)); errors.Is(err, os.ErrNotExist) {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove what is left of container %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// List returns every container with its current state, newest first.
func (s *Store) List() ([]*Container, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	out := make([]*Container, 0, len(recs))
	for _, r := range recs {
		out = append(out, s.withState(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// Get finds a container by full ID, name, or unique ID prefix.
func (s *Store) Get(ref string) (*Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	if len(ref) == 64 {
		if r, err := readRecord(s.Dir(ref)); err == nil {
			return s.withState(r), nil
		}
	}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Name == ref {
			return s.withState(r), nil
		}
	}
	var found *Record
	for _, r := range recs {
		if ref != "" && strings.HasPrefix(r.ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("container ID prefix %q is ambiguous: give more characters", ref)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return s.withState(found), nil
}

// withState reads the container's state and corrects it when its agent died.
func (s *Store) withState(r *Record) *Container {
	c := &Container{Record: *r, Dir: s.Dir(r.ID)}
	b, err := os.ReadFile(filepath.Join(c.Dir, "state.json"))
	if err == nil {
		json.Unmarshal(b, &c.State)
	}
	if c.State.Status == "" {
		c.State.Status = "created"
	}
	if (c.State.Running || c.State.Status == "running" || c.State.Status == "restarting" || c.State.Paused) && !agentAlive(c.Dir) {
		c.State.Status = "exited"
		c.State.Running, c.State.Paused, c.State.Restarting = false, false, false
		c.State.Pid = 0
		if c.State.ExitCode == 0 {
			c.State.ExitCode = 255
		}
		if c.State.Error == "" {
			c.State.Error = "the container's agent died (killed, or the machine restarted)"
		}
		if c.State.FinishedAt.IsZero() {
			if fi, err := os.Stat(filepath.Join(c.Dir, "agent.lock")); err == nil {
				c.State.FinishedAt = fi.ModTime().UTC()
			}
		}
	}
	return c
}

// agentAlive reports whether an agent holds the container's lock; a
// wedged one (wedge_linux.go) is freed and is not.
func agentAlive(dir string) bool {
	if !lockHeld(dir) {
		return false
	}
	return !unwedge(dir, 2*time.Second) || lockHeld(dir)
}

// IsActive reports whether the container's agent is running.
func (c *Container) IsActive() bool { return agentAlive(c.Dir) }

// Rename gives a container a new name.
func (s *Store) Rename(ref, name string) error {
	if !validName().MatchString(name) {
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	name = strings.TrimPrefix(name, "/")
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := s.Get(ref)
	if err != nil {
		return err
	}
	recs, err := s.records()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Name == name {
			return fmt.Errorf("the container name %q is already in use by container %s (%w)", name, r.ID[:12], ErrConflict)
		}
	}
	c.Record.Name = name
	return writeFileAtomic(filepath.Join(c.Dir, recordFile), &c.Record)
}

// writeState records st for container dir.
func writeState(dir string, st *State) error {
	return writeFileAtomic(filepath.Join(dir, "state.json"), st)
}

// ImagesInUse returns the image IDs of every container.
func (s *Store) ImagesInUse() (map[string][]string, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, r := range recs {
		m[r.Image] = append(m[r.Image], r.ID)
	}
	return m, nil
}
