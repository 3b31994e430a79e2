package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	if out := e.ok("--version"); !strings.HasPrefix(out, "roost version ") || len(lines(out)) != 1 {
		t.Errorf("--version printed %q, want one line 'roost version X'", out)
	}
	if out := e.ok("version"); !strings.Contains(out, "Version:") || !strings.Contains(out, "linux/") {
		t.Errorf("version printed %q, want Version and OS/Arch", out)
	}
	if out := strings.TrimSpace(e.ok("version", "--format", "{{.Os}}")); out != "linux" {
		t.Errorf("version --format {{.Os}} = %q, want linux", out)
	}
	help := e.ok("--help")
	for _, cmd := range []string{"import", "images", "image", "inspect", "history", "tag", "rmi", "save", "load", "info", "version", "system", "run", "build", "pull", "ps"} {
		if !strings.Contains(help, "   "+cmd) {
			t.Errorf("--help does not list %s:\n%s", cmd, help)
		}
	}
	imageHelp := e.ok("image", "--help")
	for _, cmd := range []string{"ls", "rm", "inspect", "history", "prune", "tag", "save", "load", "import"} {
		if !strings.Contains(imageHelp, "   "+cmd) {
			t.Errorf("image --help does not list %s:\n%s", cmd, imageHelp)
		}
	}
	if out := e.ok("import", "--help"); !strings.Contains(out, "--change") {
		t.Errorf("import --help does not show --change:\n%s", out)
	}
}

// TestPlannedCommands checks that every command whose help says it is
// planned says so in one line and exits 125.
func TestPlannedCommands(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	var planned [][]string
	for _, group := range [][]string{nil, {"image"}, {"container"}, {"system"}, {"volume"}} {
		help := e.ok(append(append([]string(nil), group...), "--help")...)
		for _, l := range strings.Split(help, "\n") {
			f := strings.Fields(l)
			if len(f) > 1 && strings.HasSuffix(l, "(planned)") && !strings.HasSuffix(f[0], ":") {
				planned = append(planned, append(append([]string(nil), group...), strings.TrimSuffix(f[0], ",")))
			}
		}
	}
	t.Logf("%d planned commands", len(planned))
	for _, cmd := range planned {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			args := append(append([]string(nil), cmd...), "--some-flag", "arg")
			msg := e.fails(args...)
			if !strings.Contains(msg, "planned") {
				t.Errorf("%v: %q does not say the command is planned", args, msg)
			}
		})
	}
}

// subIDRanges reads the lines of an /etc/subuid-style file that belong to u,
// as "START-END".
func subIDRanges(t *testing.T, file string, u *user.User) []string {
	t.Helper()
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 || (parts[0] != u.Username && parts[0] != u.Uid) {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%d-%d", start, start+count-1))
	}
	return out
}

func TestInfo(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	smallTar(t, e.path("a.tar"), "a")
	e.importTar(e.path("a.tar"), "a:1")
	out := e.ok("info")
	field := func(name string) string {
		t.Helper()
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && k == name {
				return strings.TrimSpace(v)
			}
		}
		t.Errorf("info has no %q line:\n%s", name, out)
		return ""
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if got := field("kernel"); !strings.Contains(got, strings.TrimSpace(string(kernel))) {
		t.Errorf("kernel line %q lacks the release %s", got, kernel)
	}
	if got := field("Storage root"); got != e.Root {
		t.Errorf("Storage root = %q, want %q", got, e.Root)
	}
	if got := field("Config file"); !strings.HasPrefix(got, filepath.Join(e.ConfigHome, "roost", "config.toml")) {
		t.Errorf("Config file = %q, want the file under XDG_CONFIG_HOME", got)
	}
	if got := field("Images"); got != "1" {
		t.Errorf("Images = %q, want 1", got)
	}
	if got := field("user namespaces"); got == "" {
		t.Error("user namespaces line is empty")
	}
	// .ci/run says which kind of user it runs the tests as, so that a
	// mistake in its set-up cannot leave one of the two cases untested.
	expect := os.Getenv("ROOST_TEST_SUBID")
	if expect != "" && expect != "range" && expect != "none" {
		t.Fatalf("ROOST_TEST_SUBID=%q: want range, none or unset", expect)
	}
	for _, id := range []struct{ file, name string }{{"/etc/subuid", "subuid range"}, {"/etc/subgid", "subgid range"}} {
		got := field(id.name)
		ranges := subIDRanges(t, id.file, u)
		if expect == "range" && len(ranges) == 0 || expect == "none" && len(ranges) > 0 {
			t.Errorf("ROOST_TEST_SUBID=%s, but %s gives %s the ranges %q", expect, id.file, u.Username, ranges)
		}
		if len(ranges) == 0 {
			if !strings.Contains(got, "none") {
				t.Errorf("%s has no line for %s, but info says %q", id.file, u.Username, got)
			}
			continue
		}
		for _, r := range ranges {
			if !strings.Contains(got, r) || !strings.HasPrefix(got, "ok") {
				t.Errorf("%s gives %s the range %s, but info says %q", id.file, u.Username, r, got)
			}
		}
	}
	for _, helper := range []string{"newuidmap", "newgidmap"} {
		got := field(helper)
		if _, err := os.Stat("/usr/bin/" + helper); err == nil && !strings.Contains(got, "/usr/bin/"+helper) {
			t.Errorf("%s line %q does not show /usr/bin/%s", helper, got, helper)
		}
	}
	for _, dev := range []string{"/dev/fuse", "/dev/net/tun"} {
		got := field(dev)
		usable := syscall.Access(dev, 6 /* R_OK|W_OK */) == nil
		if usable != strings.HasPrefix(got, "ok") {
			t.Errorf("%s: usable=%v, but info says %q", dev, usable, got)
		}
	}
	if got := field("cgroup v2 delegation"); got == "" {
		t.Error("cgroup line is empty")
	}
	if got := field("storage filesystem"); got == "" {
		t.Error("storage filesystem line is empty")
	}
	if got := e.ok("system", "info"); got != out {
		t.Errorf("system info differs from info:\n%s", got)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	type check struct {
		name   string
		config string   // the file's content
		where  string   // default, --config or ROOST_CONFIG
		inMsg  []string // parts of the one-line error; nil means success
	}
	checks := []check{
		{name: "unknown key", config: "root = \"/tmp/x\"\nbogus = 1\n", where: "default", inMsg: []string{"config.toml:2", "bogus"}},
		{name: "unknown key in table", config: "[network]\ndefault = \"none\"\nmode = \"x\"\n", where: "default", inMsg: []string{"config.toml:3", "network.mode"}},
		{name: "unknown key via --config", config: "\n\nroot = \"/tmp/x\"\nnope = true\n", where: "--config", inMsg: []string{"config.toml:4", "nope"}},
		{name: "unknown key via ROOST_CONFIG", config: "colour = \"blue\"\n", where: "ROOST_CONFIG", inMsg: []string{"config.toml:1", "colour"}},
		{name: "type error", config: "\nroot = 5\n", where: "default", inMsg: []string{"config.toml:2", "root"}},
		{name: "bad network mode", config: "[network]\ndefault = \"wormhole\"\n", where: "default", inMsg: []string{"config.toml", "network.default"}},
		{name: "not toml", config: "root = [\n", where: "default", inMsg: []string{"config.toml"}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			p := filepath.Join(e.ConfigHome, "roost", "config.toml")
			if c.where != "default" {
				p = e.path("elsewhere", "config.toml")
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			var msg string
			switch c.where {
			case "--config":
				msg = e.fails("--config", p, "images")
			case "ROOST_CONFIG":
				e.extraEnv = []string{"ROOST_CONFIG=" + p}
				msg = e.fails("images")
			default:
				msg = e.fails("images")
			}
			for _, part := range c.inMsg {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q lacks %q", msg, part)
				}
			}
			if _, err := os.Stat(e.Root); err == nil {
				t.Errorf("roost created the store %s although its config is bad", e.Root)
			}
		})
	}

	// A good file sets the storage root, by each of the three ways to name it.
	for _, where := range []string{"default", "--config", "ROOST_CONFIG"} {
		t.Run("root from "+where, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			root := e.path("configured-root")
			p := filepath.Join(e.ConfigHome, "roost", "config.toml")
			if where != "default" {
				p = e.path("elsewhere", "roost.toml")
			}
			cfg := fmt.Sprintf("root = %q\n[network]\ndefault = \"none\"\n[registries]\ninsecure = [\"localhost:5000\"]\n", root)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			e.Root = "" // ROOST_ROOT would override the file's root
			var pre []string
			switch where {
			case "--config":
				pre = []string{"--config", p}
			case "ROOST_CONFIG":
				e.extraEnv = append(e.extraEnv, "ROOST_CONFIG="+p)
			}
			smallTar(t, e.path("a.tar"), "a")
			e.ok(append(pre, "import", e.path("a.tar"), "a:1")...)
			if _, err := os.Stat(filepath.Join(root, "layers")); err != nil {
				t.Errorf("import did not use the configured root %s: %v", root, err)
			}
			info := e.ok(append(pre, "info")...)
			for _, want := range []string{root, p + " (loaded)", "localhost:5000", "none"} {
				if !strings.Contains(info, want) {
					t.Errorf("info lacks %q:\n%s", want, info)
				}
			}
		})
	}

	t.Run("missing --config file", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		p := e.path("no-such.toml")
		if msg := e.fails("--config", p, "images"); !strings.Contains(msg, p) {
			t.Errorf("error %q does not name %s", msg, p)
		}
	})
	t.Run("defaults without a file", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		e.Root = ""
		smallTar(t, e.path("a.tar"), "a")
		e.importTar(e.path("a.tar"), "a:1")
		want := filepath.Join(e.dir, "data", "roost")
		if _, err := os.Stat(filepath.Join(want, "layers")); err != nil {
			t.Errorf("default storage root is not $XDG_DATA_HOME/roost: %v", err)
		}
		if info := e.ok("info"); !strings.Contains(info, "not present, defaults apply") || !strings.Contains(info, want) {
			t.Errorf("info does not show the defaults:\n%s", info)
		}
	})
	t.Run("--root flag", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		root := e.path("flag-root")
		smallTar(t, e.path("a.tar"), "a")
		e.ok("--root", root, "import", e.path("a.tar"), "a:1")
		if got := strings.TrimSpace(e.ok("--root", root, "images", "--format", "{{.Repository}}")); got != "a" {
			t.Errorf("images in --root = %q, want a", got)
		}
		if got := e.ok("images", "-q"); got != "" {
			t.Errorf("the import went to ROOST_ROOT too: %q", got)
		}
	})
}
