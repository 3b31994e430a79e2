package cli

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/roost-containers/roost/builder"
	"github.com/roost-containers/roost/layers"
	"github.com/roost-containers/roost/rootless"
	"github.com/urfave/cli/v2"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "Build an image from a Dockerfile",
		ArgsUsage: "PATH | -",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "tag", Aliases: []string{"t"}, Usage: "name and optionally a tag (name:tag) for the image; repeatable"},
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the Dockerfile (default PATH/Dockerfile; - reads it from stdin)"},
			&cli.StringSliceFlag{Name: "build-arg", Usage: "set a build-time variable (KEY=VALUE, or KEY to take it from the environment)"},
			&cli.StringFlag{Name: "target", Usage: "the build stage to build"},
			&cli.BoolFlag{Name: "no-cache", Usage: "do not use the build cache"},
			&cli.BoolFlag{Name: "pull", Usage: "always pull the base images"},
			&cli.StringSliceFlag{Name: "label", Usage: "set metadata on the image (KEY=VALUE)"},
			&cli.StringFlag{Name: "iidfile", Usage: "write the image ID to the file"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the image ID"},
			&cli.StringFlag{Name: "network", Usage: "the network of RUN steps: default, host or none"},
			&cli.StringFlag{Name: "platform", Usage: "the target platform (os/arch[/variant]) of stages without FROM --platform"},
			&cli.StringSliceFlag{Name: "secret", Usage: "a secret for RUN --mount=type=secret: id=ID,src=FILE"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "a build context: a directory, or - for a tar (or a Dockerfile) on stdin"); err != nil {
				return err
			}
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			mapping, err := rootless.DefaultMapping()
			if err != nil {
				return err
			}
			quiet := c.Bool("quiet")
			o := builder.Options{
				ContextDir: c.Args().First(), Target: c.String("target"), NoCache: c.Bool("no-cache"), Platform: c.String("platform"),
				Network: c.String("network"), Images: is, Containers: cs, Mapping: mapping.Kind(),
				Out: c.App.Writer, ErrOut: c.App.ErrWriter, BuildArgs: map[string]string{}, Labels: map[string]string{},
			}
			if quiet {
				o.Out = io.Discard
			}
			if o.Network == "" || o.Network == "default" {
				o.Network = envOf(c).cfg.Network.Default
			}
			switch o.Network {
			case "", "private", "default", "bridge", "host", "none":
			default:
				return cli.Exit(fmt.Sprintf("build --network %q is not supported: use default, host or none", o.Network), ExitRoost)
			}
			for _, t := range c.StringSlice("tag") {
				tag, err := layers.ParseTag(t)
				if err != nil {
					return cli.Exit(err.Error(), ExitRoost)
				}
				o.Tags = append(o.Tags, tag)
			}
			for _, a := range c.StringSlice("build-arg") {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					if v, ok = os.LookupEnv(k); !ok {
						continue
					}
				}
				o.BuildArgs[k] = v
			}
			o.Secrets = map[string]string{}
			for _, sec := range c.StringSlice("secret") {
				id, src := "", ""
				for _, f := range strings.Split(sec, ",") {
					k, v, _ := strings.Cut(f, "=")
					switch k {
					case "id":
						id = v
					case "src", "source":
						src = v
					case "type":
						if v != "file" {
							return cli.Exit(fmt.Sprintf("--secret %q: roost takes files only (type=file)", sec), ExitRoost)
						}
					default:
						return cli.Exit(fmt.Sprintf("--secret %q: unknown field %q: want id=ID,src=FILE", sec, k), ExitRoost)
					}
				}
				if id == "" || src == "" {
					return cli.Exit(fmt.Sprintf("--secret %q: want id=ID,src=FILE", sec), ExitRoost)
				}
				abs, err := filepath.Abs(src)
				if err == nil {
					_, err = os.Stat(abs)
				}
				if err != nil {
					return cli.Exit(fmt.Sprintf("--secret %q: %v", sec, err), ExitRoost)
				}
				o.Secrets[id] = abs
			}
			for _, l := range c.StringSlice("label") {
				k, v, _ := strings.Cut(l, "=")
				o.Labels[k] = v
			}
			o.Base = func(ref, platform string) (*layers.Image, error) {
				if !c.Bool("pull") {
					img, err := is.Resolve(ref)
					if err == nil || !errors.Is(err, layers.ErrNotFound) {
						return img, err
					}
					if _, perr := layers.ParseReference(ref); perr != nil {
						return nil, err
					}
				}
				ro := remoteOptions(c)
				ro.Platform = platform
				if err := pullImage(c, is, ref, ro, c.App.ErrWriter, quiet, ""); err != nil {
					return nil, err
				}
				return is.Resolve(ref)
			}
			release, err := buildInput(c, is, &o)
			if err != nil {
				return cli.Exit(oneLine(err), ExitRoost)
			}
			defer release()
			res, err := builder.Build(c.Context, o)
			if err != nil {
				var be *builder.Error
				if quiet && errors.As(err, &be) {
					for _, l := range be.Tail {
						fmt.Fprintln(c.App.ErrWriter, l)
					}
				}
				return cli.Exit(oneLine(err), ExitRoost)
			}
			if f := c.String("iidfile"); f != "" {
				if err := os.WriteFile(f, []byte(res.ID.String()), 0o644); err != nil {
					return cli.Exit(fmt.Sprintf("write --iidfile: %v", err), ExitRoost)
				}
			}
			if quiet {
				fmt.Fprintln(c.App.Writer, res.ID.String())
			}
			return nil
		},
	}
}

// buildInput sets the context directory and the Dockerfile from the
// arguments: a directory, or "-" for a tar archive (or a lone Dockerfile)
// on stdin, which it unpacks into a scratch directory of the store that
// goes when the process ends.
func buildInput(c *cli.Context, is *layers.Store, o *builder.Options) (release func(), err error) {
	release = func() {}
	defer func() {
		if err != nil {
			release()
		}
	}()
	file := c.String("file")
	if file == "-" {
		if o.ContextDir == "-" {
			return release, errors.New("build: the Dockerfile and the context cannot both come from stdin")
		}
		b, err := io.ReadAll(c.App.Reader)
		if err != nil {
			return release, fmt.Errorf("read the Dockerfile from stdin: %w", err)
		}
		o.DockerfileData, o.Dockerfile = b, "Dockerfile"
	}
	if o.ContextDir != "-" {
		fi, err := os.Stat(o.ContextDir)
		if err != nil || !fi.IsDir() {
			return release, fmt.Errorf("build: the context %s is not a directory", o.ContextDir)
		}
		if file != "" && file != "-" {
			o.Dockerfile = file
		}
		return release, nil
	}
	dir, rel, err := is.MkdirTemp("context-")
	if err != nil {
		return release, err
	}
	release = rel
	o.ContextDir = filepath.Join(dir, "context")
	if err := os.Mkdir(o.ContextDir, 0o755); err != nil {
		return release, err
	}
	input := filepath.Join(dir, "stdin")
	f, err := os.Create(input)
	if err != nil {
		return release, err
	}
	n, err := io.Copy(f, c.App.Reader)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return release, fmt.Errorf("read the build context from stdin: %w", err)
	}
	if !c.Bool("quiet") {
		// Docker's "Sending build context to Docker daemon": here it is
		// only read, once, into the store's scratch space.
		fmt.Fprintf(c.App.Writer, "Received the build context from stdin: %s\n", units.HumanSize(float64(n)))
	}
	isTar, err := extractContext(input, o.ContextDir)
	if err != nil {
		return release, err
	}
	if !isTar {
		b, err := os.ReadFile(input)
		if err != nil {
			return release, err
		}
		o.DockerfileData, o.Dockerfile = b, "Dockerfile"
	} else if file != "" {
		o.Dockerfile = filepath.Join(o.ContextDir, filepath.Clean("/"+file))
	}
	return release, nil
}

// extractContext unpacks the tar (plain or compressed) at p into dir and
// reports true, or reports false when p is no tar.
func extractContext(p, dir string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, err := layers.Decompress(f)
	if err != nil {
		return false, nil
	}
	tr := tar.NewReader(r)
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			if first {
				return false, nil
			}
			return true, fmt.Errorf("read the build context: %w", err)
		}
		n, err := layers.CleanEntryName(hdr.Name)
		if err != nil {
			return true, fmt.Errorf("read the build context: %w", err)
		}
		target := filepath.Join(dir, filepath.FromSlash(n))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
				var w *os.File
				if w, err = os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(hdr.Mode)&0o777|0o600); err == nil {
					_, err = io.Copy(w, tr)
					if cerr := w.Close(); err == nil {
						err = cerr
					}
				}
			}
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
				err = os.Symlink(hdr.Linkname, target)
			}
		}
		if err != nil {
			return true, fmt.Errorf("read the build context: %w", err)
		}
	}
}

func builderPruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "Remove the build cache",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "remove all build cache (roost keeps no other kind)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "do not prompt for confirmation"},
		},
		Action: func(c *cli.Context) error {
			if !c.Bool("force") && !confirm(c, "WARNING! This will remove all build cache.") {
				return nil
			}
			is, err := openStore(c)
			if err != nil {
				return err
			}
			res, err := is.PruneCache()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "Deleted build cache objects: %d\n", res.Records)
			fmt.Fprintln(c.App.Writer, "Total reclaimed space: "+humanSize(res.Reclaimed))
			return nil
		},
	}
}

func commitCommand() *cli.Command {
	return &cli.Command{
		Name:      "commit",
		Usage:     "Create a new image from a container's changes",
		ArgsUsage: "CONTAINER [REPOSITORY[:TAG]]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "author", Aliases: []string{"a"}, Usage: "author (e.g., \"John Hannibal Smith <hannibal@a-team.com>\")"},
			&cli.StringSliceFlag{Name: "change", Aliases: []string{"c"}, Usage: "apply a Dockerfile instruction to the created image"},
			&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "commit message"},
			&cli.BoolFlag{Name: "pause", Aliases: []string{"p"}, Value: true, Usage: "pause a running container during the commit"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2, "a CONTAINER and an optional REPOSITORY[:TAG]"); err != nil {
				return err
			}
			o := builder.CommitOptions{Changes: c.StringSlice("change"), Message: c.String("message"), Author: c.String("author")}
			if c.NArg() == 2 {
				tag, err := layers.ParseTag(c.Args().Get(1))
				if err != nil {
					return cli.Exit(err.Error(), ExitRoost)
				}
				o.Tag = &tag
			}
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			ctr, err := cs.Get(c.Args().First())
			if err != nil {
				return err
			}
			if ctr.IsActive() {
				if !c.Bool("pause") {
					return cli.Exit(fmt.Sprintf("commit %s: the container is running: roost commits a running container only paused (drop --pause=false)", ctr.Name), ExitRoost)
				}
				if err := cs.Pause(ctr); err != nil {
					// A container that has just exited may still have
					// its agent finishing: wait a little for it, then commit.
					ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
					werr := cs.Wait(ctx, ctr)
					cancel()
					if werr != nil || ctr.IsActive() {
						return err
					}
				} else {
					defer cs.Unpause(ctr)
				}
			}
			o.Container, o.Images = ctr, is
			id, err := builder.Commit(o)
			if err != nil {
				return cli.Exit(oneLine(err), ExitRoost)
			}
			fmt.Fprintln(c.App.Writer, id.String())
			return nil
		},
	}
}
