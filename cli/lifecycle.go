package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roost-containers/roost/container"
	"github.com/urfave/cli/v2"
)

func pauseCommand(pause bool) *cli.Command {
	name, usage := "pause", "Pause all processes within one or more containers"
	if !pause {
		name, usage = "unpause", "Unpause all processes within one or more containers"
	}
	return &cli.Command{
		Name:      name,
		Usage:     usage,
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
				if pause {
					return cs.Pause(ctr)
				}
				return cs.Unpause(ctr)
			}, true)
		},
	}
}

// clockTicks is USER_HZ, the unit of /proc's CPU times.
const clockTicks = 100

func topCommand() *cli.Command {
	return &cli.Command{
		Name:      "top",
		Usage:     "Display the running processes of a container",
		ArgsUsage: "CONTAINER",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "exactly one CONTAINER"); err != nil {
				return err
			}
			cs, ctr, err := firstContainer(c)
			if err != nil {
				return err
			}
			ps, err := cs.Procs(ctr)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "UID\tPID\tPPID\tSTAT\tTIME\tCMD")
			for _, p := range ps {
				t := time.Duration(p.CPU) * time.Second / clockTicks
				fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%02d:%02d:%02d\t%s\n", p.UID, p.Pid, p.PPid, p.State,
					int(t.Hours()), int(t.Minutes())%60, int(t.Seconds())%60, p.Args)
			}
			return w.Flush()
		},
	}
}

// statsRow is one line of `stats`, with Docker's field names.
type statsRow struct {
	ID, Container, Name, CPUPerc, MemUsage, MemPerc, NetIO, BlockIO, PIDs string
}

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "Display a live stream of container resource usage statistics",
		ArgsUsage: "[CONTAINER...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "show all containers (default shows just running)"},
			&cli.BoolFlag{Name: "no-stream", Usage: "disable streaming stats and only pull the first result"},
			&cli.BoolFlag{Name: "no-trunc", Usage: "do not truncate output"},
			&cli.StringFlag{Name: "format", Usage: "format output: table, json, or a Go template"},
		},
		Action: func(c *cli.Context) error {
			_, cs, err := stores(c)
			if err != nil {
				return err
			}
			var ctrs []*container.Container
			if c.NArg() > 0 {
				for _, a := range c.Args().Slice() {
					ctr, err := cs.Get(a)
					if err != nil {
						return err
					}
					ctrs = append(ctrs, ctr)
				}
			} else {
				all, err := cs.List()
				if err != nil {
					return err
				}
				for _, ctr := range all {
					if c.Bool("all") || ctr.IsActive() {
						ctrs = append(ctrs, ctr)
					}
				}
			}
			memTotal := memTotal()
			headers := map[string]string{"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
				"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
			for {
				before := map[string]uint64{}
				for _, ctr := range ctrs {
					ps, _ := cs.Procs(ctr)
					before[ctr.ID] = cpuSum(ps)
				}
				start := time.Now()
				time.Sleep(500 * time.Millisecond)
				var rows []statsRow
				for _, ctr := range ctrs {
					id := ctr.ID
					if !c.Bool("no-trunc") {
						id = id[:12]
					}
					row := statsRow{ID: id, Container: id, Name: ctr.Name, CPUPerc: "0.00%", MemUsage: "0B / " + humanSize(int64(memTotal)),
						MemPerc: "0.00%", NetIO: "--", BlockIO: "--", PIDs: "0"}
					if mem, _, pids, ok := container.CgroupStats(ctr.ID); ok {
						// Read from the container's cgroup where it has one.
						ps, _ := cs.Procs(ctr)
						cpu := float64(cpuSum(ps)-before[ctr.ID]) / clockTicks / time.Since(start).Seconds() * 100
						row.CPUPerc = fmt.Sprintf("%.2f%%", cpu)
						row.MemUsage = humanSize(int64(mem)) + " / " + humanSize(int64(memTotal))
						row.MemPerc = fmt.Sprintf("%.2f%%", float64(mem)/float64(memTotal)*100)
						row.PIDs = fmt.Sprint(pids)
					} else if ps, err := cs.Procs(ctr); err == nil {
						cpu := float64(cpuSum(ps)-before[ctr.ID]) / clockTicks / time.Since(start).Seconds() * 100
						var rss uint64
						for _, p := range ps {
							rss += p.RSS
						}
						row.CPUPerc = fmt.Sprintf("%.2f%%", cpu)
						row.MemUsage = humanSize(int64(rss)) + " / " + humanSize(int64(memTotal))
						row.MemPerc = fmt.Sprintf("%.2f%%", float64(rss)/float64(memTotal)*100)
						row.PIDs = fmt.Sprint(len(ps))
					}
					rows = append(rows, row)
				}
				if !c.Bool("no-stream") {
					fmt.Fprint(c.App.Writer, "\033[2J\033[H")
				}
				rw, err := newRowWriter(c.App.Writer, c.String("format"), "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}", headers)
				if err != nil {
					return err
				}
				for _, r := range rows {
					rw.Row(r)
				}
				if err := rw.Flush(); err != nil || c.Bool("no-stream") {
					return err
				}
				select {
				case <-c.Context.Done():
					return nil
				default:
				}
			}
		},
	}
}

func cpuSum(ps []container.Proc) uint64 {
	var n uint64
	for _, p := range ps {
		n += p.CPU
	}
	return n
}

// memTotal is the machine's memory, the limit a container without one has.
func memTotal() uint64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb * 1024
		}
	}
	return 1
}

func systemPruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "Remove stopped containers, dangling images, the build cache and leftovers of interrupted writes (and with --volumes, unused anonymous volumes)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "remove all unused images, not just dangling ones"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "do not prompt for confirmation"},
			&cli.BoolFlag{Name: "volumes", Usage: "prune anonymous volumes"},
		},
		Action: func(c *cli.Context) error {
			what := []string{"all stopped containers", "all dangling images", "all build cache"}
			if c.Bool("all") {
				what[1] = "all images without at least one container associated to them"
			}
			if c.Bool("volumes") {
				what = append(what, "all anonymous volumes not used by at least one container")
			}
			q := "WARNING! This will remove:\n  - " + strings.Join(what, "\n  - ") + "\n"
			if !c.Bool("force") && !confirm(c, q) {
				return nil
			}
			is, cs, err := stores(c)
			if err != nil {
				return err
			}
			list, err := cs.List()
			if err != nil {
				return err
			}
			var removed []string
			for _, ctr := range list {
				if !ctr.IsActive() && cs.Remove(ctr, false, false) == nil {
					removed = append(removed, ctr.ID)
				}
			}
			if err := cs.RemoveLeftovers(); err != nil {
				return err
			}
			printDeleted(c.App.Writer, "Deleted Containers:", removed)
			if c.Bool("volumes") {
				vols, _ := cs.Volumes()
				users, _ := cs.VolumeUsers()
				var gone []string
				for _, v := range vols {
					if len(v.Name) == 64 && len(users[v.Name]) == 0 && cs.RemoveVolume(v.Name, false) == nil {
						gone = append(gone, v.Name)
					}
				}
				printDeleted(c.App.Writer, "Deleted Volumes:", gone)
			}
			cache, err := is.PruneCache()
			if err != nil {
				return err
			}
			res, err := is.Prune(c.Bool("all"))
			if err != nil {
				return err
			}
			res.Reclaimed += cache.Reclaimed
			printPrunedImages(c, res)
			return nil
		},
	}
}
