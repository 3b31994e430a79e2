package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/layers"
	"github.com/urfave/cli/v2"
)

// imageRow is one line of `images`, with Docker's field names.
type imageRow struct {
	Containers   string
	CreatedAt    string
	CreatedSince string
	Digest       string
	ID           string
	Repository   string
	SharedSize   string
	Size         string
	Tag          string
	UniqueSize   string
	VirtualSize  string
}

var imageHeaders = headersOf(imageRow{}, map[string]string{
	"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
	"SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
})

func imagesCommand(cmdName string, aliases ...string) *cli.Command {
	return &cli.Command{
		Name:      cmdName,
		Aliases:   aliases,
		Usage:     "List images",
		ArgsUsage: "[REPOSITORY[:TAG]]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "show all images (roost keeps no intermediate images, so the same as without)"},
			&cli.BoolFlag{Name: "digests", Usage: "show digests"},
			&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, Usage: "filter output: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE"},
			&cli.StringFlag{Name: "format", Usage: "format output: table, json, or a Go template"},
			&cli.BoolFlag{Name: "no-trunc", Usage: "don't truncate output"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only show image IDs"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1, "at most one REPOSITORY[:TAG]"); err != nil {
				return err
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			imgs, err := s.Images()
			if err != nil {
				return err
			}
			filters := c.StringSlice("filter")
			if c.NArg() == 1 {
				if _, err := layers.ParseReference(c.Args().First()); err != nil {
					return err
				}
				filters = append(filters, "reference="+c.Args().First())
			}
			match, err := imageFilter(s, filters)
			if err != nil {
				return err
			}
			def := "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			if c.Bool("digests") {
				def = "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			}
			format := c.String("format")
			if c.Bool("quiet") {
				format = "{{.ID}}"
			}
			rw, err := newRowWriter(c.App.Writer, format, def, imageHeaders)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, img := range imgs {
				for _, row := range imageRows(img, c.Bool("no-trunc")) {
					if !match(img, row) {
						continue
					}
					if c.Bool("quiet") {
						if seen[row.ID] {
							continue
						}
						seen[row.ID] = true
					}
					if err := rw.Row(row); err != nil {
						return err
					}
				}
			}
			return rw.Flush()
		},
	}
}

// imageRows gives one row per tag of img, or one <none> row when it has none.
func imageRows(img *layers.Image, noTrunc bool) []imageRow {
	base := imageRow{
		Containers:   "N/A",
		CreatedAt:    dockerTime(img.Created),
		CreatedSince: since(img.Created),
		Digest:       "<none>",
		ID:           shortID(img.ID, noTrunc),
		Size:         humanSize(img.Size),
		VirtualSize:  humanSize(img.Size),
		SharedSize:   "N/A",
		UniqueSize:   "N/A",
		Repository:   "<none>",
		Tag:          "<none>",
	}
	digests := map[string]string{}
	for _, d := range img.RepoDigests {
		if ref, err := name.NewDigest(d); err == nil {
			digests[layers.FamiliarRepository(ref.Context())] = ref.DigestStr()
		}
	}
	if len(img.Tags) == 0 {
		for repo, d := range digests {
			r := base
			r.Repository, r.Digest = repo, d
			return []imageRow{r}
		}
		return []imageRow{base}
	}
	var rows []imageRow
	for _, t := range img.Tags {
		tag, err := name.NewTag(t)
		if err != nil {
			continue
		}
		r := base
		r.Repository = layers.FamiliarRepository(tag.Context())
		r.Tag = tag.TagStr()
		if d, ok := digests[r.Repository]; ok {
			r.Digest = d
		}
		rows = append(rows, r)
	}
	return rows
}

func shortID(h v1.Hash, noTrunc bool) string {
	if noTrunc {
		return h.String()
	}
	return h.Hex[:12]
}

// imageFilter turns --filter values into a predicate, as docker images does.
func imageFilter(s *layers.Store, filters []string) (func(*layers.Image, imageRow) bool, error) {
	var preds []func(*layers.Image, imageRow) bool
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("bad filter %q: want KEY=VALUE", f)
		}
		switch k {
		case "dangling":
			want := v == "true" || v == "1"
			if !want && v != "false" && v != "0" {
				return nil, fmt.Errorf("bad filter %q: dangling takes true or false", f)
			}
			preds = append(preds, func(img *layers.Image, _ imageRow) bool { return (len(img.Tags) == 0) == want })
		case "reference":
			if _, err := path.Match(v, ""); err != nil {
				return nil, fmt.Errorf("bad filter %q: %w", f, err)
			}
			preds = append(preds, func(_ *layers.Image, r imageRow) bool {
				if r.Repository == "<none>" {
					return false
				}
				for _, cand := range []string{r.Repository, r.Repository + ":" + r.Tag} {
					if ok, _ := path.Match(v, cand); ok {
						return true
					}
				}
				return false
			})
		case "label":
			lk, lv, hasValue := strings.Cut(v, "=")
			preds = append(preds, func(img *layers.Image, _ imageRow) bool {
				cf, _, err := s.Config(img.ID)
				if err != nil {
					return false
				}
				got, ok := cf.Config.Labels[lk]
				return ok && (!hasValue || got == lv)
			})
		case "before", "since":
			ref, err := s.Resolve(v)
			if err != nil {
				return nil, fmt.Errorf("bad filter %q: %w", f, err)
			}
			before := k == "before"
			preds = append(preds, func(img *layers.Image, _ imageRow) bool {
				if before {
					return img.Created.Before(ref.Created)
				}
				return img.Created.After(ref.Created)
			})
		default:
			return nil, fmt.Errorf("bad filter %q: roost knows dangling, reference, label, before and since", f)
		}
	}
	return func(img *layers.Image, r imageRow) bool {
		for _, p := range preds {
			if !p(img, r) {
				return false
			}
		}
		return true
	}, nil
}

// inspectedImage is `image inspect`'s JSON, shaped as Docker's.
type inspectedImage struct {
	ID            string `json:"Id"`
	RepoTags      []string
	RepoDigests   []string
	Parent        string
	Comment       string
	Created       string
	DockerVersion string
	Author        string
	Config        v1.Config
	Architecture  string
	Variant       string `json:",omitempty"`
	Os            string
	OsVersion     string `json:",omitempty"`
	Size          int64
	GraphDriver   graphDriver
	RootFS        rootFS
	Metadata      imageMetadata
}

type graphDriver struct {
	Name string
	Data map[string]string
}

type rootFS struct {
	Type   string
	Layers []string
}

type imageMetadata struct {
	LastTagTime string `json:",omitempty"`
}

func inspectImage(s *layers.Store, ref string) (*inspectedImage, error) {
	img, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	cf, _, err := s.Config(img.ID)
	if err != nil {
		return nil, err
	}
	out := &inspectedImage{
		ID:            img.ID.String(),
		RepoTags:      []string{},
		RepoDigests:   []string{},
		Created:       cf.Created.Time.UTC().Format(time.RFC3339Nano),
		DockerVersion: cf.DockerVersion,
		Author:        cf.Author,
		Config:        cf.Config,
		Architecture:  cf.Architecture,
		Variant:       cf.Variant,
		Os:            cf.OS,
		OsVersion:     cf.OSVersion,
		Size:          img.Size,
		GraphDriver:   graphDriver{Name: "roost", Data: map[string]string{"Root": s.Root()}},
		RootFS:        rootFS{Type: cf.RootFS.Type, Layers: []string{}},
	}
	if len(cf.History) > 0 {
		out.Comment = cf.History[len(cf.History)-1].Comment
	}
	for _, t := range img.Tags {
		if tag, err := name.NewTag(t); err == nil {
			out.RepoTags = append(out.RepoTags, layers.FamiliarString(tag))
		}
	}
	for _, d := range img.RepoDigests {
		if dg, err := name.NewDigest(d); err == nil {
			out.RepoDigests = append(out.RepoDigests, layers.FamiliarString(dg))
		}
	}
	for _, d := range cf.RootFS.DiffIDs {
		out.RootFS.Layers = append(out.RootFS.Layers, d.String())
	}
	if !img.LastTag.IsZero() {
		out.Metadata.LastTagTime = img.LastTag.Format(time.RFC3339Nano)
	}
	return out, nil
}

// printInspect prints objects as a JSON array, or each through a template.
func printInspect(c *cli.Context, objs []any) error {
	if f := c.String("format"); f != "" && f != "json" {
		for _, o := range objs {
			// Templates see the JSON shape, so field names match Docker's.
			b, err := json.Marshal(o)
			if err != nil {
				return err
			}
			var m any
			if err := json.Unmarshal(b, &m); err != nil {
				return err
			}
			if err := writeTemplate(c.App.Writer, f, m); err != nil {
				return err
			}
		}
		return nil
	}
	if objs == nil {
		objs = []any{}
	}
	b, err := json.MarshalIndent(objs, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
	return err
}

func inspectImageCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "Display detailed information on one or more images",
		ArgsUsage: "IMAGE [IMAGE...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "format output with a Go template, or json"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one IMAGE"); err != nil {
				return err
			}
			return inspectObjects(c, "image")
		},
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "Return low-level information on roost objects",
		ArgsUsage: "NAME|ID [NAME|ID...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "format output with a Go template, or json"},
			&cli.StringFlag{Name: "type", Usage: "only inspect objects of this type: image or container"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one NAME or ID"); err != nil {
				return err
			}
			t := c.String("type")
			if t != "" && t != "image" && t != "container" {
				return fmt.Errorf("inspect: unknown type %q: use image or container", t)
			}
			return inspectObjects(c, t)
		},
	}
}

// inspectObjects prints every argument it finds, of kind "image",
// "container" or "" (either, containers first); like Docker, it prints what
// it found and then fails when one was missing.
func inspectObjects(c *cli.Context, kind string) error {
	is, cs, err := stores(c)
	if err != nil {
		return err
	}
	var objs []any
	var missing []string
	for _, a := range c.Args().Slice() {
		if kind != "image" {
			ctr, err := cs.Get(a)
			if err == nil {
				objs = append(objs, inspectContainer(ctr))
				continue
			}
			if !errors.Is(err, container.ErrNotFound) {
				return err
			}
			if kind == "container" {
				missing = append(missing, a)
				continue
			}
		}
		o, err := inspectImage(is, a)
		if errors.Is(err, layers.ErrNotFound) {
			missing = append(missing, a)
			continue
		}
		if err != nil {
			return err
		}
		objs = append(objs, o)
	}
	if err := printInspect(c, objs); err != nil {
		return err
	}
	if len(missing) > 0 {
		what := map[string]string{"image": "image", "container": "container", "": "object"}[kind]
		return fmt.Errorf("no such %s: %s", what, strings.Join(missing, ", "))
	}
	return nil
}

func inspectContainerCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "Display detailed information on one or more containers",
		ArgsUsage: "CONTAINER [CONTAINER...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "format output with a Go template, or json"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one CONTAINER"); err != nil {
				return err
			}
			return inspectObjects(c, "container")
		},
	}
}

// historyRow is one line of `history`, with Docker's field names.
type historyRow struct {
	ID           string
	CreatedSince string
	CreatedAt    string
	CreatedBy    string
	Size         string
	Comment      string
}

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "Show the history of an image",
		ArgsUsage: "IMAGE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "format output: table, json, or a Go template"},
			&cli.BoolFlag{Name: "human", Aliases: []string{"H"}, Value: true, Usage: "print sizes and dates in human readable format"},
			&cli.BoolFlag{Name: "no-trunc", Usage: "don't truncate output"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only show image IDs"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "exactly one IMAGE"); err != nil {
				return err
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			img, err := s.Resolve(c.Args().First())
			if err != nil {
				return err
			}
			cf, _, err := s.Config(img.ID)
			if err != nil {
				return err
			}
			format := c.String("format")
			if c.Bool("quiet") {
				format = "{{.ID}}"
			}
			headers := headersOf(historyRow{}, map[string]string{"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY"})
			rw, err := newRowWriter(c.App.Writer, format, "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}", headers)
			if err != nil {
				return err
			}
			layer := len(cf.RootFS.DiffIDs) - 1
			for i := len(cf.History) - 1; i >= 0; i-- {
				h := cf.History[i]
				row := historyRow{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Size: "0B"}
				if i == len(cf.History)-1 {
					row.ID = shortID(img.ID, c.Bool("no-trunc"))
				}
				if c.Bool("human") {
					row.CreatedSince, row.CreatedAt = since(h.Created.Time), since(h.Created.Time)
				} else {
					row.CreatedSince, row.CreatedAt = h.Created.Time.Format(time.RFC3339), h.Created.Time.Format(time.RFC3339)
				}
				if !h.EmptyLayer && layer >= 0 {
					if n, err := s.LayerSize(cf.RootFS.DiffIDs[layer]); err == nil {
						row.Size = humanSize(n)
						if !c.Bool("human") {
							row.Size = fmt.Sprint(n)
						}
					}
					layer--
				}
				if !c.Bool("no-trunc") && len(row.CreatedBy) > 45 {
					row.CreatedBy = row.CreatedBy[:44] + "…"
				}
				if err := rw.Row(row); err != nil {
					return err
				}
			}
			return rw.Flush()
		},
	}
}

func tagCommand() *cli.Command {
	return &cli.Command{
		Name:      "tag",
		Usage:     "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		ArgsUsage: "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2, "exactly two arguments: SOURCE_IMAGE TARGET_IMAGE"); err != nil {
				return err
			}
			target, err := layers.ParseTag(c.Args().Get(1))
			if err != nil {
				return err
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			return s.Tag(c.Args().Get(0), target)
		},
	}
}

func rmiCommand(cmdName string, aliases ...string) *cli.Command {
	return &cli.Command{
		Name:      cmdName,
		Aliases:   aliases,
		Usage:     "Remove one or more images",
		ArgsUsage: "IMAGE [IMAGE...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "force removal of the image"},
			&cli.BoolFlag{Name: "no-prune", Usage: "accepted for Docker compatibility; roost keeps no untagged parents"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one IMAGE"); err != nil {
				return err
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			var failed []string
			for _, a := range c.Args().Slice() {
				res, err := s.Remove(a, c.Bool("force"))
				if err != nil {
					fmt.Fprintln(c.App.ErrWriter, "roost: "+oneLine(err))
					failed = append(failed, a)
					continue
				}
				for _, u := range res.Untagged {
					if t, err := name.NewTag(u); err == nil {
						u = layers.FamiliarString(t)
					}
					fmt.Fprintln(c.App.Writer, "Untagged: "+u)
				}
				for _, d := range res.Deleted {
					fmt.Fprintln(c.App.Writer, "Deleted: "+d.String())
				}
			}
			if len(failed) > 0 {
				return cli.Exit("", ExitRoost)
			}
			return nil
		},
	}
}

// confirm asks a yes/no question on the terminal; anything but y is no.
func confirm(c *cli.Context, question string) bool {
	fmt.Fprintf(c.App.Writer, "%s\nAre you sure you want to continue? [y/N] ", question)
	line, _ := bufio.NewReader(c.App.Reader).ReadString('\n')
	line = strings.TrimSpace(strings.ToLower(line))
	return line == "y" || line == "yes"
}

func imagePruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "Remove unused images, and layers and temp files nothing references",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "remove all unused images, not just dangling ones"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "do not prompt for confirmation"},
		},
		Action: func(c *cli.Context) error {
			q := "WARNING! This will remove all dangling images."
			if c.Bool("all") {
				q = "WARNING! This will remove all images without at least one container associated to them."
			}
			if !c.Bool("force") && !confirm(c, q) {
				return nil
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			res, err := s.Prune(c.Bool("all"))
			if err != nil {
				return err
			}
			printPrunedImages(c, res)
			return nil
		},
	}
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "Import the contents from a tarball or directory to create a filesystem image",
		ArgsUsage: "file|dir|- [REPOSITORY[:TAG]]",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "change", Aliases: []string{"c"}, Usage: "apply a Dockerfile instruction to the created image"},
			&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "set the commit message for the imported image"},
			&cli.StringFlag{Name: "platform", Usage: "set platform (os/arch[/variant]) of the image"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2, "a file, directory or - and an optional REPOSITORY[:TAG]"); err != nil {
				return err
			}
			o := layers.ImportOptions{
				Source:   c.Args().Get(0),
				Stdin:    c.App.Reader,
				Changes:  c.StringSlice("change"),
				Message:  c.String("message"),
				Platform: c.String("platform"),
			}
			if c.NArg() == 2 {
				t, err := layers.ParseTag(c.Args().Get(1))
				if err != nil {
					return err
				}
				o.Tag = &t
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			id, err := s.Import(o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, id.String())
			return nil
		},
	}
}

func saveCommand() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "Save one or more images to a tar archive (streamed to STDOUT by default)",
		ArgsUsage: "IMAGE [IMAGE...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to a file instead of STDOUT"},
			&cli.StringFlag{Name: "format", Value: layers.DockerArchive, Usage: "archive format: docker-archive or oci-archive"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one IMAGE"); err != nil {
				return err
			}
			o := layers.SaveOptions{Refs: c.Args().Slice(), Format: c.String("format")}
			if o.Format != layers.DockerArchive && o.Format != layers.OCIArchive {
				return fmt.Errorf("unknown --format %q: use docker-archive or oci-archive", o.Format)
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			if out := c.String("output"); out != "" && out != "-" {
				return s.SaveFile(out, o)
			}
			if f, ok := c.App.Writer.(*os.File); ok && isTerminal(f) {
				return errors.New("refusing to write an image archive to a terminal: use -o FILE or redirect the output")
			}
			w := bufio.NewWriterSize(c.App.Writer, 1<<20)
			if err := s.Save(w, o); err != nil {
				return err
			}
			return w.Flush()
		},
	}
}

func loadCommand() *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "Load images from a tar archive (docker-archive or OCI archive) or STDIN",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "read from a tar archive file instead of STDIN"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "suppress the load output"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments (use -i FILE)"); err != nil {
				return err
			}
			in := c.App.Reader
			if p := c.String("input"); p != "" {
				f, err := os.Open(p)
				if err != nil {
					return fmt.Errorf("open %s: %w", p, errors.Unwrap(err))
				}
				defer f.Close()
				in = f
			} else if f, ok := in.(*os.File); ok && isTerminal(f) {
				return errors.New("load reads an archive from STDIN, which is a terminal: use -i FILE or redirect the input")
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			loaded, err := s.Load(in)
			if err != nil {
				return err
			}
			var lines []string
			for _, l := range loaded {
				if len(l.Tags) == 0 {
					lines = append(lines, "Loaded image ID: "+l.ID.String())
				}
				for _, t := range l.Tags {
					lines = append(lines, "Loaded image: "+layers.FamiliarString(t))
				}
			}
			sort.Strings(lines)
			if !c.Bool("quiet") {
				for _, l := range lines {
					fmt.Fprintln(c.App.Writer, l)
				}
			}
			return nil
		},
	}
}

// printDeleted prints a prune's list of removed things, as Docker does.
func printDeleted(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintln(w, title)
	for _, it := range items {
		fmt.Fprintln(w, it)
	}
	fmt.Fprintln(w)
}

// printPrunedImages ends a prune with the images it removed and the space.
func printPrunedImages(c *cli.Context, res *layers.PruneResult) {
	var deleted []string
	for _, d := range res.Deleted {
		deleted = append(deleted, "deleted: "+d.String())
	}
	printDeleted(c.App.Writer, "Deleted Images:", deleted)
	fmt.Fprintln(c.App.Writer, "Total reclaimed space: "+humanSize(res.Reclaimed))
}
