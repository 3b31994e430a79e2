package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func volumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "volume",
		Usage: "Manage volumes",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "Create a volume", ArgsUsage: "[VOLUME]",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 1, "at most one VOLUME name"); err != nil {
						return err
					}
					_, cs, err := stores(c)
					if err != nil {
						return err
					}
					v, err := cs.CreateVolume(c.Args().First())
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, v.Name)
					return nil
				},
			},
			{
				Name: "ls", Aliases: []string{"list"}, Usage: "List volumes",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only display volume names"},
					&cli.StringFlag{Name: "format", Usage: "format output: table, json, or a Go template"},
				},
				Action: func(c *cli.Context) error {
					_, cs, err := stores(c)
					if err != nil {
						return err
					}
					vols, err := cs.Volumes()
					if err != nil {
						return err
					}
					format := c.String("format")
					if c.Bool("quiet") {
						format = "{{.Name}}"
					}
					type row struct{ Driver, Name, Mountpoint, Scope string }
					rw, err := newRowWriter(c.App.Writer, format, "{{.Driver}}\t{{.Name}}", map[string]string{"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE"})
					if err != nil {
						return err
					}
					for _, v := range vols {
						if err := rw.Row(row{v.Driver, v.Name, v.Mountpoint, v.Scope}); err != nil {
							return err
						}
					}
					return rw.Flush()
				},
			},
			{
				Name: "inspect", Usage: "Display detailed information on volumes", ArgsUsage: "VOLUME [VOLUME...]",
				Flags: []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "format output with a Go template"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, -1, "at least one VOLUME"); err != nil {
						return err
					}
					_, cs, err := stores(c)
					if err != nil {
						return err
					}
					var objs []any
					for _, n := range c.Args().Slice() {
						v, err := cs.Volume(n)
						if err != nil {
							return err
						}
						objs = append(objs, v)
					}
					return printInspect(c, objs)
				},
			},
			{
				Name: "rm", Aliases: []string{"remove"}, Usage: "Remove one or more volumes", ArgsUsage: "VOLUME [VOLUME...]",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "force the removal of one or more volumes"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, -1, "at least one VOLUME"); err != nil {
						return err
					}
					_, cs, err := stores(c)
					if err != nil {
						return err
					}
					failed := false
					for _, n := range c.Args().Slice() {
						if err := cs.RemoveVolume(n, c.Bool("force")); err != nil {
							fmt.Fprintln(c.App.ErrWriter, "roost: "+oneLine(err))
							failed = true
							continue
						}
						fmt.Fprintln(c.App.Writer, n)
					}
					if failed {
						return cli.Exit("", ExitRoost)
					}
					return nil
				},
			},
			{
				Name: "prune", Usage: "Remove unused local volumes",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "do not prompt for confirmation"},
					&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "remove all unused volumes, not just anonymous ones"},
				},
				Action: func(c *cli.Context) error {
					if !c.Bool("force") && !confirm(c, "WARNING! This will remove anonymous local volumes not used by at least one container.") {
						return nil
					}
					_, cs, err := stores(c)
					if err != nil {
						return err
					}
					vols, err := cs.Volumes()
					if err != nil {
						return err
					}
					users, err := cs.VolumeUsers()
					if err != nil {
						return err
					}
					var removed []string
					for _, v := range vols {
						anonymous := len(v.Name) == 64
						if len(users[v.Name]) > 0 || (!anonymous && !c.Bool("all")) {
							continue
						}
						if err := cs.RemoveVolume(v.Name, false); err == nil {
							removed = append(removed, v.Name)
						}
					}
					printDeleted(c.App.Writer, "Deleted Volumes:", removed)
					fmt.Fprintln(c.App.Writer, "Total reclaimed space: 0B")
					return nil
				},
			},
		},
	}
}
