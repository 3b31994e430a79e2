package container

// InitSpec is what the agent tells init (see protocol.go).
type InitSpec struct {
	// Rootfs is the union mountpoint to pivot into.
	Rootfs string
	// Args is the command; Args[0] is looked up in the container's PATH.
	Args []string
	Env  []string
	Cwd  string
	// User is Docker's -u: user[:group], names or ids.
	User     string
	GroupAdd []string
	Hostname string
	Tty      bool
	ReadOnly bool
	Mounts   []InitMount
	// EtcFiles maps /etc/hosts, /etc/hostname, /etc/resolv.conf to the host
	// files bind-mounted over them; empty where the agent bound them on the
	// union already (see agent.bindEtcFiles).
	EtcFiles map[string]string
	// AptConf, with a single id mapped, is a host file that init mounts
	// into /etc/apt/apt.conf.d where the image has that directory.
	AptConf         string
	Rlimits         []Ulimit
	CapAdd, CapDrop []string
	NoNewPrivileges bool
	// Seccomp is the profile: "" for Docker's default, "unconfined", or a
	// profile in Docker's JSON format.
	Seccomp string
	// SeccompFilters, when not nil, are the filters of Seccomp as the
	// agent compiled them while init started (each an array of struct
	// sock_filter); nil leaves the compiling to init.
	SeccompFilters [][]byte
	Devices        []Device
	// Init runs a minimal init as PID 1 that runs the command.
	Init bool
	// HostNetwork is set for --network host: init leaves networking alone.
	HostNetwork bool
	// NetworkPending says the agent sets up the network while init works:
	// init reads the spec pipe to its end before it execs the command.
	NetworkPending bool `json:",omitempty"`
	// Mapping is the id mapping kind: full, subid or single. With single,
	// a non-root user runs in a nested user namespace that maps it to root.
	Mapping string
	// KeepID runs the command as the caller's own uid and gid.
	KeepID           bool
	HostUID, HostGID int
	// NestedUID and NestedGID, when not -1, are the ids init runs as in a
	// user namespace nested in the agent's (set by the agent).
	NestedUID, NestedGID int
	// UserFiles, when set, are the image's /etc/passwd and /etc/group as
	// the agent read them from the union while init started (no mount of
	// the container covers them); init resolves User with them instead of
	// reading the files itself. A nil file is a missing one.
	UserFiles *UserFiles `json:",omitempty"`
	// PortHandoff hands the container's bind(2) calls to the agent, which
	// gives a bind of a published TCP port a host socket (see
	// netns/handoff_linux.go). Set by the agent, for init and exec.
	PortHandoff bool `json:",omitempty"`
	// NotifySocket, with Mapping single or PortHandoff, is the descriptor
	// of the socket on which init (or exec) sends the agent the listener of
	// its seccomp filter for the chown family and bind (see chown_linux.go,
	// bind_linux.go); 0 for none.
	NotifySocket int
}

// UserFiles are the user database files of an image.
type UserFiles struct {
	Passwd, Group []byte
}

// InitMount is one bind or tmpfs mount.
type InitMount struct {
	Type        string // bind or tmpfs
	Source      string
	Destination string
	ReadOnly    bool
	Options     string
}
