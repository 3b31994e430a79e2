package cli

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/rootless"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "Show the roost version information",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "format output with a Go template"},
		},
		Action: func(c *cli.Context) error {
			v := struct{ Version, GoVersion, Os, Arch string }{Version, runtime.Version(), runtime.GOOS, runtime.GOARCH}
			if f := c.String("format"); f != "" {
				return writeTemplate(c.App.Writer, f, v)
			}
			fmt.Fprintf(c.App.Writer, "roost:\n Version:\t%s\n Go version:\t%s\n OS/Arch:\t%s/%s\n", v.Version, v.GoVersion, v.Os, v.Arch)
			return nil
		},
	}
}

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "Display the effective configuration and what this host allows",
		Action: func(c *cli.Context) error {
			e := envOf(c)
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			cfg := e.cfg
			status := "not present, defaults apply"
			if e.configRead {
				status = "loaded"
			}
			fmt.Fprintf(w, "Client:\troost %s (%s/%s)\n", Version, runtime.GOOS, runtime.GOARCH)
			fmt.Fprintf(w, " Config file:\t%s (%s)\n", e.configPath, status)
			fmt.Fprintf(w, " Storage root:\t%s\n", cfg.Root)
			fmt.Fprintf(w, " Runtime dir:\t%s\n", cfg.RunRoot)
			fmt.Fprintf(w, " Default network:\t%s\n", cfg.Network.Default)
			fmt.Fprintf(w, " Insecure registries:\t%s\n", listOrNone(cfg.Registries.Insecure))
			var mirrors []string
			for reg, ms := range cfg.Registries.Mirrors {
				mirrors = append(mirrors, reg+" -> "+strings.Join(ms, ", "))
			}
			fmt.Fprintf(w, " Registry mirrors:\t%s\n", listOrNone(mirrors))
			if s, err := openStore(c); err == nil {
				if imgs, err := s.Images(); err == nil {
					fmt.Fprintf(w, " Images:\t%d\n", len(imgs))
				}
			}
			fmt.Fprintf(w, "Host (user %d):\n", os.Getuid())
			for _, ch := range rootless.Probe(cfg.Root) {
				mark := "ok"
				switch {
				case !ch.OK:
					mark = "MISSING"
				case ch.Warn:
					mark = "warning"
				}
				fmt.Fprintf(w, " %s:\t%s: %s\n", ch.Name, mark, ch.Detail)
				if ch.Hint != "" && (!ch.OK || ch.Warn) {
					fmt.Fprintf(w, " \t  hint: %s\n", ch.Hint)
				}
			}
			return w.Flush()
		},
	}
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func dfCommand() *cli.Command {
	return &cli.Command{
		Name:  "df",
		Usage: "Show roost disk usage",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "format output: table, json, or a Go template"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show detailed information on space usage"},
		},
		Action: func(c *cli.Context) error {
			s, err := openStore(c)
			if err != nil {
				return err
			}
			imgs, err := s.Images()
			if err != nil {
				return err
			}
			size, err := s.DiskUsage()
			if err != nil {
				return err
			}
			type dfRow struct{ Type, TotalCount, Active, Size, Reclaimable string }
			headers := map[string]string{"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}
			rw, err := newRowWriter(c.App.Writer, c.String("format"), "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}", headers)
			if err != nil {
				return err
			}
			reclaim := humanSize(size)
			if size > 0 {
				reclaim += " (100%)"
			}
			nCache, cacheSize, err := s.CacheUsage()
			if err != nil {
				return err
			}
			nCtr, nActive, nVol, nVolUsed := 0, 0, 0, 0
			var ctrSize, ctrFree, volSize, volFree int64
			if cs, err := container.OpenStore(envOf(c).cfg.Root, envOf(c).cfg.RunRoot); err == nil {
				ctrs, _ := cs.List()
				nCtr = len(ctrs)
				for _, ctr := range ctrs {
					n := ctr.Size()
					ctrSize += n
					if ctr.IsActive() {
						nActive++
					} else {
						ctrFree += n
					}
				}
				vols, _ := cs.Volumes()
				users, _ := cs.VolumeUsers()
				nVol = len(vols)
				for _, v := range vols {
					n := v.Size()
					volSize += n
					if len(users[v.Name]) > 0 {
						nVolUsed++
					} else {
						volFree += n
					}
				}
			}
			pct := func(part, whole int64) string {
				if whole == 0 {
					return humanSize(part)
				}
				return fmt.Sprintf("%s (%d%%)", humanSize(part), part*100/whole)
			}
			rows := []dfRow{
				{"Images", fmt.Sprint(len(imgs)), "0", humanSize(size), reclaim},
				{"Containers", fmt.Sprint(nCtr), fmt.Sprint(nActive), humanSize(ctrSize), pct(ctrFree, ctrSize)},
				{"Local Volumes", fmt.Sprint(nVol), fmt.Sprint(nVolUsed), humanSize(volSize), pct(volFree, volSize)},
				{"Build Cache", fmt.Sprint(nCache), "0", humanSize(cacheSize), humanSize(cacheSize)},
			}
			for _, r := range rows {
				if err := rw.Row(r); err != nil {
					return err
				}
			}
			if err := rw.Flush(); err != nil {
				return err
			}
			if c.Bool("verbose") {
				fmt.Fprintln(c.App.Writer, "\nImages space usage:")
				iw, err := newRowWriter(c.App.Writer, "", "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}", imageHeaders)
				if err != nil {
					return err
				}
				for _, img := range imgs {
					for _, r := range imageRows(img, false) {
						iw.Row(r)
					}
				}
				if err := iw.Flush(); err != nil {
					return err
				}
				cs, err := container.OpenStore(envOf(c).cfg.Root, envOf(c).cfg.RunRoot)
				if err != nil {
					return err
				}
				ctrs, _ := cs.List()
				fmt.Fprintln(c.App.Writer, "\nContainers space usage:")
				cw := tabwriter.NewWriter(c.App.Writer, 10, 1, 3, ' ', 0)
				fmt.Fprintln(cw, "CONTAINER ID\tIMAGE\tCOMMAND\tSIZE\tCREATED\tSTATUS\tNAMES")
				for _, ctr := range ctrs {
					fmt.Fprintf(cw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ctr.ID[:12], ctr.ImageName, commandText(ctr, true),
						humanSize(ctr.Size()), since(ctr.Created), statusText(ctr), ctr.Name)
				}
				if err := cw.Flush(); err != nil {
					return err
				}
				vols, _ := cs.Volumes()
				users, _ := cs.VolumeUsers()
				fmt.Fprintln(c.App.Writer, "\nLocal Volumes space usage:")
				vw := tabwriter.NewWriter(c.App.Writer, 10, 1, 3, ' ', 0)
				fmt.Fprintln(vw, "VOLUME NAME\tLINKS\tSIZE")
				for _, v := range vols {
					fmt.Fprintf(vw, "%s\t%d\t%s\n", v.Name, len(users[v.Name]), humanSize(v.Size()))
				}
				return vw.Flush()
			}
			return nil
		},
	}
}

// makeRaw puts the terminal f into raw mode and returns how to restore it.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// winsize returns the terminal's rows and columns.
func winsize(f *os.File) ([2]uint16, error) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return [2]uint16{}, err
	}
	return [2]uint16{ws.Row, ws.Col}, nil
}
