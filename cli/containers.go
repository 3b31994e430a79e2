package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/fuse"
	"github.com/roost-containers/roost/layers"
	"github.com/roost-containers/roost/netns"
	"github.com/roost-containers/roost/rootless"
	"github.com/urfave/cli/v2"
)

// stores opens the image store and the container store.
func stores(c *cli.Context) (*layers.Store, *container.Store, error) {
	e := envOf(c)
	is, err := openStore(c)
	if err != nil {
		return nil, nil, err
	}
	cs, err := container.OpenStore(e.cfg.Root, e.cfg.RunRoot)
	if err != nil {
		return nil, nil, err
	}
	cs.Resolver, cs.ClientAddress, cs.ProxyPorts = e.cfg.Network.Resolver, e.cfg.Network.ClientAddress, e.cfg.Network.ProxyPorts
	return is, cs, nil
}

func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "add-host", Usage: "add a custom host-to-IP mapping (host:ip)"},
		&cli.StringSliceFlag{Name: "cap-add", Usage: "add Linux capabilities"},
		&cli.StringSliceFlag{Name: "cap-drop", Usage: "drop Linux capabilities"},
		&cli.StringFlag{Name: "cidfile", Usage: "write the container ID to the file"},
		&cli.StringSliceFlag{Name: "device", Usage: "add a host device to the container"},
		&cli.StringSliceFlag{Name: "dns", Usage: "set custom DNS servers"},
		&cli.StringSliceFlag{Name: "dns-option", Usage: "set DNS options"},
		&cli.StringSliceFlag{Name: "dns-search", Usage: "set custom DNS search domains"},
		&cli.StringFlag{Name: "entrypoint", Usage: "overwrite the default ENTRYPOINT of the image"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables"},
		&cli.StringSliceFlag{Name: "env-file", Usage: "read in a file of environment variables"},
		&cli.StringSliceFlag{Name: "group-add", Usage: "add additional groups to join"},
		&cli.StringFlag{Name: "hostname", Aliases: []string{"h"}, Usage: "container host name"},
		&cli.BoolFlag{Name: "init", Usage: "run an init inside the container that forwards signals and reaps processes"},
		&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "keep STDIN open even if not attached"},
		&cli.StringSliceFlag{Name: "label", Aliases: []string{"l"}, Usage: "set meta data on a container"},
		&cli.StringSliceFlag{Name: "link", Usage: "add link to another container (name[:alias])"},
		&cli.StringSliceFlag{Name: "mount", Usage: "attach a filesystem mount to the container"},
		&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "memory limit (cgroup v2)"},
		&cli.StringFlag{Name: "cpus", Usage: "number of CPUs (cgroup v2)"},
		&cli.Int64Flag{Name: "pids-limit", Usage: "tune container pids limit (cgroup v2)"},
		&cli.StringFlag{Name: "name", Usage: "assign a name to the container"},
		&cli.StringFlag{Name: "network", Aliases: []string{"net"}, Usage: "connect a container to a network: private (default), host or none"},
		&cli.StringSliceFlag{Name: "publish", Aliases: []string{"p"}, Usage: "publish a container's port(s) to the host: [ip:][hostPort:]containerPort[/tcp|udp]"},
		&cli.BoolFlag{Name: "publish-all", Aliases: []string{"P"}, Usage: "publish all exposed ports to free host ports"},
		&cli.StringFlag{Name: "pull", Value: "missing", Usage: "pull image before running: missing, always or never"},
		&cli.BoolFlag{Name: "read-only", Usage: "mount the container's root filesystem as read only"},
		&cli.StringFlag{Name: "restart", Value: "no", Usage: "restart policy to apply when a container exits"},
		&cli.BoolFlag{Name: "rm", Usage: "automatically remove the container when it exits"},
		&cli.StringSliceFlag{Name: "security-opt", Usage: "security options: no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"},
		&cli.StringFlag{Name: "stop-signal", Usage: "signal to stop the container"},
		&cli.IntFlag{Name: "stop-timeout", Value: -1, Usage: "timeout (in seconds) to stop a container"},
		&cli.StringSliceFlag{Name: "tmpfs", Usage: "mount a tmpfs directory"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
		&cli.StringSliceFlag{Name: "ulimit", Usage: "ulimit options"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "username or UID (format: <name|uid>[:<group|gid>])"},
		&cli.StringFlag{Name: "userns", Usage: "user namespace mode: keep-id runs as your own uid and gid"},
		&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "bind mount a volume"},
		&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory inside the container"},
	}
}

// createContainer turns run/create flags into a container.
// createContainer makes the container the flags describe, with the ID id
// ("" for a new one).
func createContainer(c *cli.Context, is *layers.Store, cs *container.Store, id string) (*container.Container, error) {
	if c.NArg() < 1 {
		return nil, usageError(c, "wants an IMAGE")
	}
	ref := c.Args().First()
	img, err := resolveOrPull(c, is, ref)
	if err != nil {
		return nil, err
	}
	cf, _, err := is.Config(img.ID)
	if err != nil {
		return nil, err
	}
	mapping, err := rootless.DefaultMapping()
	if err != nil {
		return nil, err
	}
	o := container.CreateOptions{
		ID: id, Name: c.String("name"), Image: ref, ImageID: img.ID, ImageCfg: cf, Layers: cf.RootFS.DiffIDs,
		Cmd: c.Args().Tail(), Env: c.StringSlice("env"), EnvFiles: c.StringSlice("env-file"),
		Volumes: c.StringSlice("volume"), Mounts: c.StringSlice("mount"), Tmpfs: c.StringSlice("tmpfs"),
		Workdir: c.String("workdir"), User: c.String("user"), GroupAdd: c.StringSlice("group-add"),
		Hostname: c.String("hostname"), ReadOnly: c.Bool("read-only"), Labels: c.StringSlice("label"),
		StopSignal: c.String("stop-signal"), StopTimeout: c.Int("stop-timeout"), Ulimits: c.StringSlice("ulimit"),
		CapAdd: c.StringSlice("cap-add"), CapDrop: c.StringSlice("cap-drop"), SecurityOpt: c.StringSlice("security-opt"),
		Devices: c.StringSlice("device"), Init: c.Bool("init"), Userns: c.String("userns"),
		Interactive: c.Bool("interactive"), Tty: c.Bool("tty"), AutoRemove: c.Bool("rm"),
		Network: c.String("network"), AddHosts: c.StringSlice("add-host"), DNS: c.StringSlice("dns"),
		DNSSearch: c.StringSlice("dns-search"), DNSOptions: c.StringSlice("dns-option"), Links: c.StringSlice("link"),
		Restart: c.String("restart"), Mapping: mapping.Kind(),
		Publish: c.StringSlice("publish"), PublishAll: c.Bool("publish-all"),
		Memory: c.String("memory"), CPUs: c.String("cpus"), PidsLimit: c.Int64("pids-limit"),
	}
	if o.Network == "" {
		o.Network = envOf(c).cfg.Network.Default
	}
	if (o.Memory != "" || o.CPUs != "" || o.PidsLimit != 0) && !container.CgroupsAvailable() {
		return nil, errors.New("--memory, --cpus and --pids-limit need cgroup v2 with a cgroup delegated to you (a systemd user session, or ROOST_CGROUP naming one): see roost info")
	}
	if c.IsSet("entrypoint") {
		ep := c.String("entrypoint")
		o.Entrypoint = &ep
	}
	ctr, err := cs.Create(o)
	if err != nil {
		return nil, err
	}
	if f := c.String("cidfile"); f != "" {
		if err := os.WriteFile(f, []byte(ctr.ID), 0o644); err != nil {
			cs.Remove(ctr, true, true)
			return nil, fmt.Errorf("write --cidfile: %w", err)
		}
	}
	return ctr, nil
}

// firstContainer opens the container store and finds the container the
// first argument names.
func firstContainer(c *cli.Context) (*container.Store, *container.Container, error) {
	_, cs, err := stores(c)
	if err != nil {
		return nil, nil, err
	}
	ctr, err := cs.Get(c.Args().First())
	if err != nil {
		return nil, nil, err
	}
	return cs, ctr, nil
}

// startOptions are the options to start ctr with: its image's layer files
// and their merged view.
func startOptions(is *layers.Store, ctr *container.Container) (container.StartOptions, error) {
	var o container.StartOptions
	var ids []v1.Hash
	for _, l := range ctr.Layers {
		h, err := layers.ParseDigest(l)
		if err != nil {
			return o, err
		}
		if !is.HasLayer(h) {
			return o, fmt.Errorf("layer %s of container %s is missing from the store", h, ctr.Name)
		}
		o.Layers = append(o.Layers, fuse.LayerFiles{Tar: is.LayerTar(h), Index: is.LayerIndex(h)})
		ids = append(ids, h)
	}
	o.MergedView = is.MergedView(ids)
	return o, nil
}

func createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "Create a new container",
		ArgsUsage: "IMAGE [COMMAND] [ARG...]",
		Flags:     createFlags(),
		Action: func(c *cli.Context) error {
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			ctr, err := createContainer(c, is, cs, "")
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, ctr.ID)
			return nil
		},
	}
}

func runCommand() *cli.Command {
	flags := append(createFlags(),
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "run container in background and print container ID"},
		&cli.BoolFlag{Name: "sig-proxy", Value: true, Usage: "proxy received signals to the process"},
		&cli.StringFlag{Name: "detach-keys", Usage: "override the key sequence for detaching a container (default ctrl-p,ctrl-q)"},
	)
	return &cli.Command{
		Name:      "run",
		Usage:     "Create and run a new container from an image",
		ArgsUsage: "IMAGE [COMMAND] [ARG...]",
		Flags:     flags,
		Action: func(c *cli.Context) error {
			container.Trace("cli", "start")
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			// The agent starts while the container is made (or already
			// did: startEarly); one that joins another container's
			// network is started by that container's agent instead.
			id, agent := takeEarly()
			if id == "" {
				id = container.NewID()
			}
			if agent == nil && !strings.HasPrefix(c.String("network"), "container:") {
				agent = cs.Prespawn(id, !c.Bool("detach"))
			}
			defer agent.Close()
			ctr, err := createContainer(c, is, cs, id)
			if err != nil {
				return err
			}
			container.Trace("cli", "created")
			return startAndAttach(c, is, cs, ctr, agent, !c.Bool("detach"), c.Bool("interactive"), c.Bool("sig-proxy"))
		},
	}
}

// startAndAttach starts ctr; attached, it streams its output and exits with
// its status; detached, it prints its ID.
func startAndAttach(c *cli.Context, is *layers.Store, cs *container.Store, ctr *container.Container, agent *container.Prespawned, attach, stdin, sigProxy bool) error {
	o, err := startOptions(is, ctr)
	if err != nil {
		return err
	}
	o.Attach, o.Agent = attach, agent
	sess, err := cs.Start(ctr, o)
	if err != nil {
		if ctr.HostConfig.AutoRemove {
			cs.Remove(ctr, true, true)
		}
		return cli.Exit(oneLine(err), container.ExitCode(err))
	}
	if !attach {
		fmt.Fprintln(c.App.Writer, ctr.ID)
		return nil
	}
	if ctr.Config.Tty {
		return streamSession(c, sess, true, stdin)
	}
	if sigProxy {
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		go func() {
			for s := range sigs {
				cs.Kill(ctr, s.(syscall.Signal))
			}
		}()
	}
	return streamSession(c, sess, false, stdin)
}

// streamSession copies an attached session to the terminal (raw, with its
// size followed, when tty) and exits with the container's status.
func streamSession(c *cli.Context, sess *container.Session, tty, stdin bool) error {
	aio := container.AttachIO{Stdout: c.App.Writer, Stderr: c.App.ErrWriter}
	if stdin {
		aio.Stdin = c.App.Reader
	}
	if tty && stdin {
		keys := "ctrl-p,ctrl-q"
		if c.IsSet("detach-keys") {
			keys = c.String("detach-keys")
		}
		dk, err := container.ParseDetachKeys(keys)
		if err != nil {
			return err
		}
		aio.DetachKeys = dk
	}
	if tty {
		if f, ok := c.App.Reader.(*os.File); ok && isTerminal(f) {
			restore, err := makeRaw(f)
			if err == nil {
				defer restore()
			}
			resize := func() {
				if ws, err := winsize(f); err == nil {
					sess.Resize(ws[0], ws[1])
				}
			}
			resize()
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					resize()
				}
			}()
		}
	}
	code, err := sess.Stream(context.Background(), aio)
	if errors.Is(err, container.ErrDetached) {
		return nil
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func startCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "Start one or more stopped containers",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "attach", Aliases: []string{"a"}, Usage: "attach STDOUT/STDERR and forward signals"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "attach container's STDIN"},
			&cli.StringFlag{Name: "detach-keys", Usage: "override the key sequence for detaching a container"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			attach := c.Bool("attach") || c.Bool("interactive")
			if attach && c.NArg() > 1 {
				return usageError(c, "attaches to one container only")
			}
			return eachContainer(c, cs, func(ctr *container.Container) error {
				if ctr.IsActive() {
					if !attach {
						fmt.Fprintln(c.App.Writer, c.Args().First())
					}
					return nil
				}
				if attach {
					return startAndAttach(c, is, cs, ctr, nil, true, c.Bool("interactive"), true)
				}
				o, err := startOptions(is, ctr)
				if err != nil {
					return err
				}
				if _, err := cs.Start(ctr, o); err != nil {
					return err
				}
				return nil
			}, !attach)
		},
	}
}

// eachContainer runs fn for each argument, printing the argument on success
// when echo is set (as Docker's stop, kill, rm, start do), and fails at the end
// if any failed.
func eachContainer(c *cli.Context, cs *container.Store, fn func(*container.Container) error, echo bool) error {
	failed := 0
	for _, a := range c.Args().Slice() {
		ctr, err := cs.Get(a)
		if err == nil {
			err = fn(ctr)
		}
		if err != nil {
			var ec cli.ExitCoder
			if errors.As(err, &ec) && c.NArg() == 1 {
				return err
			}
			fmt.Fprintln(c.App.ErrWriter, "roost: "+oneLine(err))
			failed++
			continue
		}
		if echo {
			fmt.Fprintln(c.App.Writer, a)
		}
	}
	if failed > 0 {
		return cli.Exit("", ExitRoost)
	}
	return nil
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "Stop one or more running containers",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "time", Aliases: []string{"t"}, Value: -1, Usage: "seconds to wait before killing the container"},
			&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Usage: "signal to send to the container"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			return eachContainer(c, cs, func(ctr *container.Container) error {
				if s := c.String("signal"); s != "" {
					ctr.Config.StopSignal = s
				}
				return cs.Stop(ctr, c.Int("time"))
			}, true)
		},
	}
}

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "Kill one or more running containers",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Value: "KILL", Usage: "signal to send to the container"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			sig, err := container.ParseSignal(c.String("signal"))
			if err != nil {
				return err
			}
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			return eachContainer(c, cs, func(ctr *container.Container) error { return cs.Kill(ctr, sig) }, true)
		},
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove"},
		Usage:     "Remove one or more containers",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "force the removal of a running container"},
			&cli.BoolFlag{Name: "volumes", Aliases: []string{"v"}, Usage: "remove anonymous volumes associated with the container"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			return eachContainer(c, cs, func(ctr *container.Container) error {
				return cs.Remove(ctr, c.Bool("force"), c.Bool("volumes"))
			}, true)
		},
	}
}

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "Block until one or more containers stop, then print their exit codes",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			return eachContainer(c, cs, func(ctr *container.Container) error {
				if err := cs.Wait(c.Context, ctr); err != nil {
					return err
				}
				after, err := cs.Get(ctr.ID)
				if err != nil {
					// Removed on exit (--rm): its status is gone with it.
					fmt.Fprintln(c.App.Writer, 0)
					return nil
				}
				fmt.Fprintln(c.App.Writer, after.State.ExitCode)
				return nil
			}, false)
		},
	}
}

func renameCommand() *cli.Command {
	return &cli.Command{
		Name:      "rename",
		Usage:     "Rename a container",
		ArgsUsage: "CONTAINER NEW_NAME",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2, "CONTAINER and NEW_NAME"); err != nil {
				return err
			}
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			return cs.Rename(c.Args().Get(0), c.Args().Get(1))
		},
	}
}

// psRow is one line of `ps`, with Docker's field names.
type psRow struct {
	ID         string
	Image      string
	Command    string
	CreatedAt  string
	RunningFor string
	Ports      string
	State      string
	Status     string
	Size       string
	Names      string
	Labels     string
	Mounts     string
	Networks   string
}

var psHeaders = headersOf(psRow{}, map[string]string{"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT"})

// statusText is Docker's STATUS column.
func statusText(ctr *container.Container) string {
	st := ctr.State
	switch st.Status {
	case "running":
		return "Up " + units.HumanDuration(time.Since(st.StartedAt))
	case "paused":
		return "Up " + units.HumanDuration(time.Since(st.StartedAt)) + " (Paused)"
	case "exited":
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	case "restarting":
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	}
	return "Created"
}

func commandText(ctr *container.Container, trunc bool) string {
	cmd := strings.Join(append([]string{ctr.Path}, ctr.Args...), " ")
	if trunc && len(cmd) > 20 {
		cmd = cmd[:19] + "…"
	}
	return fmt.Sprintf("%q", cmd)
}

func psCommand(cmdName string, aliases ...string) *cli.Command {
	return &cli.Command{
		Name:    cmdName,
		Aliases: aliases,
		Usage:   "List containers",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "show all containers (default shows just running)"},
			&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, Usage: "filter output: status=, name=, id=, label=, ancestor="},
			&cli.StringFlag{Name: "format", Usage: "format output: table, json, or a Go template"},
			&cli.IntFlag{Name: "last", Aliases: []string{"n"}, Value: -1, Usage: "show n last created containers"},
			&cli.BoolFlag{Name: "latest", Aliases: []string{"l"}, Usage: "show the latest created container"},
			&cli.BoolFlag{Name: "no-trunc", Usage: "don't truncate output"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only display container IDs"},
			&cli.BoolFlag{Name: "size", Aliases: []string{"s"}, Usage: "display total file sizes"},
		},
		Action: func(c *cli.Context) error {
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			list, err := cs.List()
			if err != nil {
				return err
			}
			match, err := containerFilter(c.StringSlice("filter"))
			if err != nil {
				return err
			}
			format := c.String("format")
			if c.Bool("quiet") {
				format = "{{.ID}}"
			}
			rw, err := newRowWriter(c.App.Writer, format, "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}", psHeaders)
			if err != nil {
				return err
			}
			last := c.Int("last")
			if c.Bool("latest") {
				last = 1
			}
			all := c.Bool("all") || last > 0 || len(c.StringSlice("filter")) > 0
			n := 0
			for _, ctr := range list {
				if last >= 0 && n >= last {
					break
				}
				n++
				if !all && ctr.State.Status != "running" && ctr.State.Status != "paused" && ctr.State.Status != "restarting" {
					continue
				}
				if !match(ctr) {
					continue
				}
				id := ctr.ID
				if !c.Bool("no-trunc") {
					id = id[:12]
				}
				var labels []string
				for k, v := range ctr.Config.Labels {
					labels = append(labels, k+"="+v)
				}
				var mounts []string
				for _, m := range ctr.Mounts {
					mounts = append(mounts, m.Name+m.Source)
				}
				var ports []string
				for _, p := range ctr.State.Ports {
					ports = append(ports, p.String())
				}
				row := psRow{
					Ports: strings.Join(ports, ", "),
					ID:    id, Image: ctr.ImageName, Command: commandText(ctr, !c.Bool("no-trunc")),
					CreatedAt: dockerTime(ctr.Created), RunningFor: since(ctr.Created),
					State: ctr.State.Status, Status: statusText(ctr), Names: ctr.Name,
					Labels: strings.Join(labels, ","), Mounts: strings.Join(mounts, ","), Networks: ctr.HostConfig.NetworkMode,
				}
				if err := rw.Row(row); err != nil {
					return err
				}
			}
			return rw.Flush()
		},
	}
}

func containerFilter(filters []string) (func(*container.Container) bool, error) {
	var preds []func(*container.Container) bool
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("bad filter %q: want KEY=VALUE", f)
		}
		switch k {
		case "status":
			switch v {
			case "created", "restarting", "running", "removing", "paused", "exited", "dead":
			default:
				return nil, fmt.Errorf("bad filter %q: status is one of created, restarting, running, removing, paused, exited, dead", f)
			}
			preds = append(preds, func(c *container.Container) bool { return c.State.Status == v })
		case "name":
			preds = append(preds, func(c *container.Container) bool { return strings.Contains(c.Name, v) })
		case "id":
			preds = append(preds, func(c *container.Container) bool { return strings.HasPrefix(c.ID, v) })
		case "ancestor":
			preds = append(preds, func(c *container.Container) bool {
				return c.ImageName == v || strings.HasPrefix(strings.TrimPrefix(c.Image, "sha256:"), strings.TrimPrefix(v, "sha256:"))
			})
		case "label":
			lk, lv, hasV := strings.Cut(v, "=")
			preds = append(preds, func(c *container.Container) bool {
				got, ok := c.Config.Labels[lk]
				return ok && (!hasV || got == lv)
			})
		case "exited":
			preds = append(preds, func(c *container.Container) bool {
				return c.State.Status == "exited" && fmt.Sprint(c.State.ExitCode) == v
			})
		default:
			return nil, fmt.Errorf("bad filter %q: roost knows status, name, id, ancestor, label and exited", f)
		}
	}
	return func(c *container.Container) bool {
		for _, p := range preds {
			if !p(c) {
				return false
			}
		}
		return true
	}, nil
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "Fetch the logs of a container",
		ArgsUsage: "CONTAINER",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "follow log output"},
			&cli.StringFlag{Name: "since", Usage: "show logs since timestamp (2013-01-02T13:23:37Z) or relative (42m)"},
			&cli.StringFlag{Name: "until", Usage: "show logs before a timestamp or relative"},
			&cli.StringFlag{Name: "tail", Aliases: []string{"n"}, Value: "all", Usage: "number of lines to show from the end of the logs"},
			&cli.BoolFlag{Name: "timestamps", Aliases: []string{"t"}, Usage: "show timestamps"},
			&cli.BoolFlag{Name: "details", Usage: "accepted for Docker compatibility"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "exactly one CONTAINER"); err != nil {
				return err
			}
			cs, ctr, err := firstContainer(c)
			if err != nil {
				return err
			}
			o := container.LogOptions{Follow: c.Bool("follow"), Tail: -1}
			if t := c.String("tail"); t != "all" {
				if _, err := fmt.Sscan(t, &o.Tail); err != nil || o.Tail < 0 {
					return fmt.Errorf("invalid --tail %q: want a number or all", t)
				}
			}
			for _, f := range []struct {
				name string
				dst  *time.Time
			}{{"since", &o.Since}, {"until", &o.Until}} {
				if v := c.String(f.name); v != "" {
					t, err := parseTimeArg(v)
					if err != nil {
						return fmt.Errorf("invalid --%s %q: %w", f.name, v, err)
					}
					*f.dst = t
				}
			}
			return cs.ReadLogs(ctr, o, c.Context.Done(), func(e container.LogEntry) error {
				w := c.App.Writer
				if e.Stream == "stderr" {
					w = c.App.ErrWriter
				}
				if c.Bool("timestamps") {
					_, err := io.WriteString(w, e.Time.Format(time.RFC3339Nano)+" "+e.Log)
					return err
				}
				_, err := io.WriteString(w, e.Log)
				return err
			})
		},
	}
}

// parseTimeArg reads a --since/--until value: a duration ago, a Unix time,
// or an RFC 3339 time.
func parseTimeArg(v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	var secs float64
	if _, err := fmt.Sscanf(v, "%f", &secs); err == nil && !strings.ContainsAny(v, "-:T") {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want a duration (5m), a Unix time or an RFC 3339 time")
}

func containerPruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "Remove all stopped containers",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "do not prompt for confirmation"}},
		Action: func(c *cli.Context) error {
			if !c.Bool("force") && !confirm(c, "WARNING! This will remove all stopped containers.") {
				return nil
			}
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			list, err := cs.List()
			if err != nil {
				return err
			}
			var removed []string
			for _, ctr := range list {
				if ctr.IsActive() {
					continue
				}
				if err := cs.Remove(ctr, false, false); err == nil {
					removed = append(removed, ctr.ID)
				}
			}
			if err := cs.RemoveLeftovers(); err != nil {
				return err
			}
			printDeleted(c.App.Writer, "Deleted Containers:", removed)
			fmt.Fprintln(c.App.Writer, "Total reclaimed space: 0B")
			return nil
		},
	}
}

// inspectedContainer is `container inspect`'s JSON, shaped as Docker's.
type inspectedContainer struct {
	ID              string `json:"Id"`
	Created         string
	Path            string
	Args            []string
	State           inspectedState
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	HostConfig      container.HostConfig
	Mounts          []inspectedMount
	Config          container.Config
	NetworkSettings networkSettings
}

// networkSettings is Docker's NetworkSettings: addresses while running.
type networkSettings struct {
	Bridge      string
	SandboxID   string
	SandboxKey  string
	Ports       map[string][]portBinding
	Gateway     string
	IPAddress   string
	IPPrefixLen int
	MacAddress  string
	Networks    map[string]endpointSettings
}

type endpointSettings struct {
	Links               []string
	Aliases             []string
	NetworkID           string
	EndpointID          string
	Gateway             string
	IPAddress           string
	IPPrefixLen         int
	IPv6Gateway         string
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	MacAddress          string
}

func inspectNetwork(ctr *container.Container) networkSettings {
	ns := networkSettings{Ports: portMap(ctr.State.Ports)}
	ep := endpointSettings{NetworkID: ctr.HostConfig.NetworkMode}
	running := ctr.State.Pid != 0
	if running {
		ns.SandboxID = ctr.ID
		ns.SandboxKey = fmt.Sprintf("/proc/%d/ns/net", ctr.State.Pid)
	}
	if mode := ctr.HostConfig.NetworkMode; running && mode != "host" && mode != "none" && !strings.HasPrefix(mode, "container:") {
		ns.Gateway, ns.IPAddress, ns.IPPrefixLen = netns.Gateway.String(), netns.ContainerIP.String(), netns.Subnet.Bits()
		ep.Gateway, ep.IPAddress, ep.IPPrefixLen, ep.EndpointID = ns.Gateway, ns.IPAddress, ns.IPPrefixLen, ctr.ID
	}
	ns.Networks = map[string]endpointSettings{ctr.HostConfig.NetworkMode: ep}
	return ns
}

type inspectedState struct {
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
}

type inspectedMount struct {
	Type        string
	Name        string `json:",omitempty"`
	Source      string
	Destination string
	Driver      string `json:",omitempty"`
	Mode        string
	RW          bool
	Propagation string
}

func dockerTimeOrZero(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func inspectContainer(ctr *container.Container) *inspectedContainer {
	st := ctr.State
	out := &inspectedContainer{
		ID: ctr.ID, Created: ctr.Created.Format(time.RFC3339Nano), Path: ctr.Path, Args: ctr.Args,
		State: inspectedState{Status: st.Status, Running: st.Status == "running" || st.Status == "paused", Paused: st.Paused,
			Restarting: st.Restarting, OOMKilled: st.OOMKilled, Dead: st.Dead, Pid: st.Pid, ExitCode: st.ExitCode,
			Error: st.Error, StartedAt: dockerTimeOrZero(st.StartedAt), FinishedAt: dockerTimeOrZero(st.FinishedAt)},
		Image:          ctr.Image,
		ResolvConfPath: ctr.Dir + "/resolv.conf", HostnamePath: ctr.Dir + "/hostname", HostsPath: ctr.Dir + "/hosts",
		LogPath: ctr.Dir + "/ctr.log", Name: "/" + ctr.Name, Driver: "roost-fuse", Platform: "linux",
		RestartCount: st.RestartCount,
		HostConfig:   ctr.HostConfig, Config: ctr.Config, Mounts: []inspectedMount{},
		NetworkSettings: inspectNetwork(ctr),
	}
	for _, l := range ctr.Links {
		out.HostConfig.Links = append(out.HostConfig.Links, fmt.Sprintf("/%s:/%s/%s", l.Name, ctr.Name, l.Alias))
	}
	if out.Args == nil {
		out.Args = []string{}
	}
	for _, m := range ctr.Mounts {
		im := inspectedMount{Type: m.Type, Name: m.Name, Source: m.Source, Destination: m.Destination, Mode: m.Mode, RW: m.RW}
		if m.Type == "volume" {
			im.Driver = "local"
		}
		if m.Type == "bind" {
			im.Propagation = "rprivate"
		}
		out.Mounts = append(out.Mounts, im)
	}
	return out
}

type portBinding struct {
	HostIp   string
	HostPort string
}

// portMap is Docker's NetworkSettings.Ports: "80/tcp" -> host bindings.
func portMap(ports []netns.PortMapping) map[string][]portBinding {
	m := map[string][]portBinding{}
	for _, p := range ports {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		k := fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)
		m[k] = append(m[k], portBinding{HostIp: ip, HostPort: fmt.Sprint(p.HostPort)})
	}
	return m
}

func portCommand() *cli.Command {
	return &cli.Command{
		Name:      "port",
		Usage:     "List port mappings or a specific mapping for the container",
		ArgsUsage: "CONTAINER [PRIVATE_PORT[/PROTO]]",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2, "CONTAINER and an optional PRIVATE_PORT[/PROTO]"); err != nil {
				return err
			}
			_, ctr, err := firstContainer(c)
			if err != nil {
				return err
			}
			want := c.Args().Get(1)
			if want != "" && !strings.Contains(want, "/") {
				want += "/tcp"
			}
			found := false
			for _, p := range ctr.State.Ports {
				k := fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)
				ip := p.HostIP
				if ip == "" {
					ip = "0.0.0.0"
				}
				host := net.JoinHostPort(ip, fmt.Sprint(p.HostPort))
				switch {
				case want == "":
					fmt.Fprintf(c.App.Writer, "%s -> %s\n", k, host)
				case want == k:
					fmt.Fprintln(c.App.Writer, host)
					found = true
				}
			}
			if want != "" && !found {
				return fmt.Errorf("no public port %s published for %s", want, ctr.Name)
			}
			return nil
		},
	}
}

func restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "Restart one or more containers",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "time", Aliases: []string{"t"}, Value: -1, Usage: "seconds to wait before killing the container"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			return eachContainer(c, cs, func(ctr *container.Container) error {
				if err := cs.Stop(ctr, c.Int("time")); err != nil {
					return err
				}
				o, err := startOptions(is, ctr)
				if err != nil {
					return err
				}
				_, err = cs.Start(ctr, o)
				return err
			}, true)
		},
	}
}

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "Execute a command in a running container",
		ArgsUsage: "CONTAINER COMMAND [ARG...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detached mode: run command in the background"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables"},
			&cli.StringSliceFlag{Name: "env-file", Usage: "read in a file of environment variables"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "keep STDIN open even if not attached"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "username or UID (format: <name|uid>[:<group|gid>])"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory inside the container"},
			&cli.BoolFlag{Name: "privileged", Usage: "accepted for Docker compatibility; roost gives exec the container's capabilities"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, -1, "CONTAINER and a COMMAND"); err != nil {
				return err
			}
			cs, ctr, err := firstContainer(c)
			if err != nil {
				return err
			}
			env, err := container.ReadEnv(c.StringSlice("env"), c.StringSlice("env-file"))
			if err != nil {
				return err
			}
			es := container.ExecSpec{
				Args: c.Args().Tail(), Env: env, User: c.String("user"), Workdir: c.String("workdir"),
				Tty: c.Bool("tty"), Stdin: c.Bool("interactive"), Detach: c.Bool("detach"),
			}
			sess, err := cs.Exec(ctr, es)
			if err != nil {
				return cli.Exit(oneLine(err), container.ExitCode(err))
			}
			if es.Detach {
				return nil
			}
			return streamSession(c, sess, es.Tty, es.Stdin)
		},
	}
}

func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "Attach local standard input, output, and error streams to a running container",
		ArgsUsage: "CONTAINER",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "detach-keys", Usage: "override the key sequence for detaching a container (default ctrl-p,ctrl-q)"},
			&cli.BoolFlag{Name: "no-stdin", Usage: "do not attach STDIN"},
			&cli.BoolFlag{Name: "sig-proxy", Value: true, Usage: "proxy all received signals to the process"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "exactly one CONTAINER"); err != nil {
				return err
			}
			cs, ctr, err := firstContainer(c)
			if err != nil {
				return err
			}
			sess, err := cs.Attach(ctr)
			if err != nil {
				return err
			}
			stdin := !c.Bool("no-stdin") && ctr.Config.OpenStdin
			if !ctr.Config.Tty && c.Bool("sig-proxy") {
				sigs := make(chan os.Signal, 8)
				signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
				defer signal.Stop(sigs)
				go func() {
					for s := range sigs {
						cs.Kill(ctr, s.(syscall.Signal))
					}
				}()
			}
			return streamSession(c, sess, ctr.Config.Tty, stdin)
		},
	}
}
