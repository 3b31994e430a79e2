// Package cli is roost's command line: Docker's command tree and flags. It is
// the only package that imports urfave/cli and the only one that writes to the
// terminal. Each Action checks its arguments, builds one options value and
// calls one library function.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/config"
	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/layers"
	"github.com/urfave/cli/v2"
)

// Version is roost's version, set at build time with -ldflags "-X".
var Version = "0.1.0-dev"

// Exit codes as Docker's.
const (
	ExitRoost = 125 // roost itself failed
)

// Run runs roost with args (args[0] is the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	startEarly(args)
	app := New(stdin, stdout, stderr)
	err := app.RunContext(ctx, args)
	if early != nil { // not taken: the command line was not a run after all
		early.agent.Close()
		early = nil
	}
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(stderr, "roost: "+msg)
		}
		return ec.ExitCode()
	}
	msg := oneLine(err)
	if f, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag: --" + strings.TrimPrefix(f, "-") + "; see 'roost " + strings.Join(commandWords(args), " ") + " --help'"
	}
	fmt.Fprintln(stderr, "roost: "+msg)
	return ExitRoost
}

// commandWords are the leading non-flag words of args after the program.
func commandWords(args []string) []string {
	var out []string
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") {
			break
		}
		out = append(out, a)
	}
	return out
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func init() {
	// Docker's -h is run's --hostname; help is --help alone.
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"}
}

// New builds the roost application.
func New(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                      "roost",
		Usage:                     "run OCI and Docker images as an unprivileged user: no daemon, no root",
		Version:                   Version,
		Reader:                    stdin,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		UseShortOptionHandling:    true,
		DisableSliceFlagSeparator: true,
		EnableBashCompletion:      true,
		HideHelpCommand:           true,
		ExitErrHandler:            func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration file", EnvVars: []string{"ROOST_CONFIG"}},
			&cli.StringFlag{Name: "root", Usage: "storage root (overrides the config's root)", EnvVars: []string{"ROOST_ROOT"}},
		},
		Before: loadConfig,
		Commands: []*cli.Command{
			attachCommand(),
			buildCommand(),
			commitCommand(),
			planned("cp", "Copy files between a container and the host", "the runtime issue"),
			createCommand(),
			planned("diff", "Show changes to a container's filesystem", "the runtime issue"),
			execCommand(),
			planned("export", "Export a container's filesystem as a tar archive", "the runtime issue"),
			historyCommand(),
			imagesCommand("images"),
			importCommand(),
			infoCommand(),
			inspectCommand(),
			killCommand(),
			loadCommand(),
			loginCommand(),
			logoutCommand(),
			logsCommand(),
			pauseCommand(true),
			portCommand(),
			psCommand("ps"),
			pullCommand(),
			pushCommand(),
			renameCommand(),
			restartCommand(),
			rmCommand(),
			rmiCommand("rmi"),
			runCommand(),
			saveCommand(),
			startCommand(),
			statsCommand(),
			stopCommand(),
			tagCommand(),
			topCommand(),
			pauseCommand(false),
			waitCommand(),
			versionCommand(),
			{
				Name:  "image",
				Usage: "Manage images",
				Subcommands: []*cli.Command{
					buildCommand(),
					historyCommand(),
					importCommand(),
					inspectImageCommand(),
					loadCommand(),
					imagesCommand("ls", "list"),
					imageMountCommand(),
					imagePruneCommand(),
					pullCommand(),
					pushCommand(),
					rmiCommand("rm", "remove"),
					saveCommand(),
					tagCommand(),
				},
			},
			{
				Name:  "container",
				Usage: "Manage containers",
				Subcommands: []*cli.Command{
					attachCommand(),
					commitCommand(),
					createCommand(),
					execCommand(),
					inspectContainerCommand(),
					killCommand(),
					logsCommand(),
					psCommand("ls", "list", "ps"),
					pauseCommand(true),
					portCommand(),
					containerPruneCommand(),
					renameCommand(),
					restartCommand(),
					rmCommand(),
					runCommand(),
					startCommand(),
					statsCommand(),
					stopCommand(),
					topCommand(),
					pauseCommand(false),
					waitCommand(),
				},
			},
			volumeCommand(),
			{
				Name:        "builder",
				Usage:       "Manage builds",
				Subcommands: []*cli.Command{buildCommand(), builderPruneCommand()},
			},
			{
				Name:  "system",
				Usage: "Manage roost",
				Subcommands: []*cli.Command{
					dfCommand(),
					infoCommand(),
					systemPruneCommand(),
				},
			},
		},
	}
	return app
}

// planned is a command of Docker's tree that roost does not do yet.
func planned(name, usage, issue string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage + " (planned)",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return cli.Exit(fmt.Sprintf("%s is not implemented yet: it is planned (%s); see README.md for what works today", c.Command.FullName(), issue), ExitRoost)
		},
	}
}

// env is what every command gets from the global flags and the config file.
type env struct {
	cfg        config.Config
	configPath string
	configRead bool
}

func loadConfig(c *cli.Context) error {
	p, explicit := c.String("config"), true
	if p == "" {
		p, explicit = config.DefaultPath(), false
	}
	cfg, err := config.Load(p, explicit)
	if err != nil {
		return cli.Exit(oneLine(err), ExitRoost)
	}
	if r := c.String("root"); r != "" {
		cfg.Root = r
	}
	_, statErr := os.Stat(p)
	c.App.Metadata = map[string]any{"env": &env{cfg: cfg, configPath: p, configRead: statErr == nil}}
	return nil
}

func envOf(c *cli.Context) *env {
	return c.App.Metadata["env"].(*env)
}

// openStore opens the image store the configuration names; images that
// containers use are protected from removal.
func openStore(c *cli.Context) (*layers.Store, error) {
	e := envOf(c)
	s, err := layers.Open(e.cfg.Root)
	if err != nil {
		return nil, err
	}
	if s.Reserve, err = layers.ParseReserve(e.cfg.MinFreeSpace); err != nil {
		return nil, fmt.Errorf("config: key min_free_space: %w", err)
	}
	s.InUse = func(id v1.Hash) []string {
		cs, err := container.OpenStore(e.cfg.Root, e.cfg.RunRoot)
		if err != nil {
			return nil
		}
		m, err := cs.ImagesInUse()
		if err != nil {
			return nil
		}
		return m[id.String()]
	}
	return s, nil
}

// usageError is a wrong use of a command: Docker's "requires exactly 1 argument".
func usageError(c *cli.Context, format string, a ...any) error {
	return cli.Exit(fmt.Sprintf("%s: %s; see roost %s --help", c.Command.FullName(), fmt.Sprintf(format, a...), c.Command.FullName()), ExitRoost)
}

func needArgs(c *cli.Context, min, max int, what string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return usageError(c, "wants %s", what)
	}
	return nil
}
