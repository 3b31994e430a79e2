package cli

import (
	"github.com/roost-containers/roost/fuse"
	"github.com/urfave/cli/v2"
)

// imageMountCommand is `roost image mount IMAGE -- CMD [ARGS...]`: it runs CMD
// in a user and mount namespace with the image mounted, writable, at
// $ROOST_MOUNT; the changes are thrown away afterwards.
func imageMountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "Run a command with an image's filesystem mounted at $ROOST_MOUNT (changes are discarded)",
		ArgsUsage: "IMAGE -- CMD [ARGS...]",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, -1, "IMAGE and a command: IMAGE -- CMD [ARGS...]"); err != nil {
				return err
			}
			args := c.Args().Slice()
			if args[1] == "--" {
				args = append(args[:1], args[2:]...)
			}
			if len(args) < 2 {
				return usageError(c, "wants a command after IMAGE --")
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			img, err := s.Resolve(args[0])
			if err != nil {
				return err
			}
			ids, err := s.ImageLayers(img)
			if err != nil {
				return err
			}
			scratch, release, err := s.MkdirTemp("mount-")
			if err != nil {
				return err
			}
			defer release()
			opts := fuse.RunOptions{
				TempDir: scratch,
				Command: args[1:],
				Stdin:   c.App.Reader,
				Stdout:  c.App.Writer,
				Stderr:  c.App.ErrWriter,
			}
			for _, id := range ids {
				opts.Layers = append(opts.Layers, fuse.LayerFiles{Tar: s.LayerTar(id), Index: s.LayerIndex(id)})
			}
			code, err := fuse.RunMounted(c.Context, opts)
			if err != nil {
				return err
			}
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}
