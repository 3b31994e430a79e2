package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runImage imports a busybox root filesystem with every applet linked, an
// /etc/passwd with root, www-data (33) and nobody, and CMD sh; it returns
// the image reference.
func runImage(t *testing.T, e *roostEnv) string {
	t.Helper()
	es := busyboxEntries(t)
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	have := map[string]bool{}
	for _, en := range es {
		have[en.name] = true
	}
	for _, a := range strings.Fields(string(out)) {
		if !have["bin/"+a] && a != "busybox" {
			es = append(es, entry{name: "bin/" + a, typ: tar.TypeSymlink, linkname: "busybox"})
		}
	}
	es = append(es,
		entry{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"},
		entry{name: "etc/group", body: "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"},
		entry{name: "var/", typ: tar.TypeDir},
		entry{name: "var/www/", typ: tar.TypeDir, uid: 33, gid: 33},
		entry{name: "root/", typ: tar.TypeDir, mode: 0o700},
	)
	p := e.path("runimage.tar")
	writeTar(t, p, es)
	e.importTar(p, "busybox", "--change", `CMD ["sh"]`)
	return "busybox"
}

// containerState reads `inspect` of a container.
type containerState struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status   string
		Running  bool
		Pid      int
		ExitCode int
		Error    string
	}
	Config struct {
		Env        []string
		WorkingDir string
		User       string
		Hostname   string
	}
	Mounts []struct {
		Type, Name, Source, Destination string
		RW                              bool
	}
}

func (e *roostEnv) inspectContainer(ref string) containerState {
	e.t.Helper()
	out := e.ok("container", "inspect", ref)
	var got []containerState
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		e.t.Fatalf("container inspect %s: %v\n%s", ref, err, out)
	}
	return got[0]
}

// agentPid reads the pid of a container's agent from its state file.
func (e *roostEnv) agentPid(id string) int {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Root, "containers", id, "state.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var st struct{ AgentPid int }
	json.Unmarshal(b, &st)
	if st.AgentPid == 0 {
		e.t.Fatalf("state of %s names no agent pid: %s", id, b)
	}
	return st.AgentPid
}

// roostProcesses lists this user's processes running the roost binary
// (agents and container inits), by pid.
func roostProcesses(t *testing.T) []string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := os.Stat("/proc/" + d.Name())
		if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != os.Getuid() {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if bytes.HasPrefix(cmdline, []byte("container-")) {
			out = append(out, d.Name()+":"+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte(" "))))
		}
	}
	return out
}

// processGone reports whether pid has exited: it is gone, or a zombie
// (this machine's PID 1 does not reap the orphans it inherits).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// waitGone waits until no roost agent or init of this user is left.
func waitGone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := roostProcesses(t)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunForeground(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	if out := e.ok("run", "--rm", img, "echo", "hello"); out != "hello\n" {
		t.Errorf("run echo hello printed %q", out)
	}
	r := e.run("run", "--rm", img, "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("want exit 3, out and err on their streams; got %s", r)
	}
	r = e.runIn(strings.NewReader("from stdin\n"), "run", "-i", "--rm", img, "cat")
	if r.code != 0 || r.stdout != "from stdin\n" {
		t.Errorf("run -i cat: %s", r)
	}
	// The container is PID 1 in its own namespaces, with the usual files.
	out := e.ok("run", "--rm", "--hostname", "box", img, "sh", "-c",
		`echo pid=$$; hostname; cat /etc/hostname; grep -c box /etc/hosts; test -c /dev/null && echo devnull; test -d /dev/pts && echo pts; test -d /dev/shm && echo shm; test -r /proc/self/status && echo proc; touch /sys/x 2>/dev/null || echo sysro; ip link 2>/dev/null | grep -c UP || true; echo $HOME $PATH`)
	for _, want := range []string{"pid=1\n", "box\nbox\n1\n", "devnull\n", "pts\n", "shm\n", "proc\n", "sysro\n", "/root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} {
		if !strings.Contains(out, want) {
			t.Errorf("container view lacks %q:\n%s", want, out)
		}
	}
	// Docker's masked and read-only paths.
	for _, p := range []string{"/proc/interrupts", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if out := e.ok("run", "--rm", img, "sh", "-c", "wc -c < "+p); strings.TrimSpace(out) != "0" {
			t.Errorf("%s is not masked: %s bytes", p, out)
		}
	}
	if out := e.ok("run", "--rm", img, "sh", "-c", "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo writable || echo read-only"); out != "read-only\n" {
		t.Errorf("/proc/sys is %s", out)
	}
	if ids := strings.TrimSpace(e.ok("ps", "-a", "-q")); ids != "" {
		t.Errorf("run --rm left containers: %q", ids)
	}
	waitGone(t)
}

// TestStartWithoutInit: the agent starts the command itself, from a thread
// it set up as the container (container/direct_linux.go), and the container
// is the same as one roost's init starts (ROOST_INIT=1 asks for that): the
// same processes, ids, capabilities, seccomp mode, mounts, devices, network
// and limits. It needs Linux 6.17 or later (the proc filesystem's pidns
// option); older kernels take init's way, which this test then reports.
func TestStartWithoutInit(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	probe := `echo pid=$$; set -- /proc/[0-9]*; echo $#; ` +
		`grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; ` +
		`hostname; cat /proc/self/uid_map /proc/self/gid_map; awk '{print $5, $6}' /proc/self/mountinfo | sort; ` +
		`ls -l /dev | awk '{print $1, $NF}'; ip -o -4 addr | awk '{print $2, $4}'; ulimit -n; pwd; tty; env | sort`
	view := func(name string, args []string, env ...string) (string, string) {
		trace := e.path("trace-" + name)
		e.extraEnv = append([]string{"ROOST_TRACE=" + trace}, env...)
		defer func() { e.extraEnv = nil }()
		out := e.ok(append(append([]string{"run", "--rm", "--hostname", "same"}, args...), img, "sh", "-c", probe)...)
		b, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		return out, string(b)
	}
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"user", []string{"-u", "0:0", "-w", "/tmp/new", "-e", "A=1"}},
		{"host-network", []string{"--network", "host"}},
		{"none", []string{"--network", "none", "--read-only", "--cap-drop", "NET_RAW", "--security-opt", "no-new-privileges"}},
		{"unconfined", []string{"--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN"}},
	} {
		direct, dtrace := view(c.name+"-direct", c.args)
		viaInit, itrace := view(c.name+"-init", c.args, "ROOST_INIT=1")
		if !strings.Contains(dtrace, " agent direct-mounted ") || strings.Contains(dtrace, " init start ") {
			t.Errorf("%s: the agent did not start the command itself (this needs Linux 6.17 or later; this kernel is %s); trace:\n%s",
				c.name, strings.TrimSpace(string(release)), dtrace)
		}
		if !strings.Contains(itrace, " init start ") {
			t.Errorf("%s: ROOST_INIT=1 did not start init; trace:\n%s", c.name, itrace)
		}
		if direct != viaInit {
			t.Errorf("%s: the container started directly differs from init's:\n--- direct\n%s--- init\n%s", c.name, direct, viaInit)
		}
		if !strings.HasPrefix(direct, "pid=1\n1\n") {
			t.Errorf("%s: want the command as PID 1 and only its processes in /proc:\n%s", c.name, direct)
		}
	}
	// A terminal, and a command that is not there.
	r := e.run("run", "--rm", "-t", img, "sh", "-c", "tty; echo $$")
	if r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/0") || !strings.Contains(r.stdout, "\n1") {
		t.Errorf("run -t: %s", r)
	}
	r = e.run("run", "--rm", img, "no-such-command")
	if r.code != 127 || !strings.Contains(r.stderr, "executable file not found") {
		t.Errorf("a missing command: %s", r)
	}
}

func TestRunErrors(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	e.ok("run", "-d", "--name", "taken", img, "sleep", "60")
	t.Cleanup(func() { e.run("rm", "-f", "taken") })
	before := e.ok("ps", "-a", "-q", "--no-trunc")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not found", []string{"run", "--rm", img, "nosuchcommand"}, 127, "not found"},
		{"not executable", []string{"run", "--rm", img, "/etc/passwd"}, 126, "permission denied"},
		{"unknown image", []string{"run", "--rm", "--pull", "never", "nosuchimage"}, 125, "nosuchimage"},
		{"duplicate name", []string{"run", "--name", "taken", img, "true"}, 125, "already in use"},
		{"bad volume spec", []string{"run", "--rm", "-v", "a:b:c:d", img, "true"}, 125, "invalid volume specification"},
		{"relative destination", []string{"run", "--rm", "-v", "/tmp:rel", img, "true"}, 125, "absolute path"},
		{"missing bind source", []string{"run", "--rm", "-v", "/no/such/dir:/x", img, "true"}, 125, "does not exist"},
		{"bad user", []string{"run", "--rm", "-u", "nosuchuser", img, "true"}, 125, "nosuchuser"},
		{"bad ulimit", []string{"run", "--rm", "--ulimit", "nofile=abc", img, "true"}, 125, "ulimit"},
		{"unknown ulimit", []string{"run", "--rm", "--ulimit", "bogus=1:2", img, "true"}, 125, "ulimit"},
		{"bad capability", []string{"run", "--rm", "--cap-add", "NOPE", img, "true"}, 125, "capability"},
		{"stop unknown", []string{"stop", "nosuchcontainer"}, 125, "no such container"},
		{"rm unknown", []string{"rm", "nosuchcontainer"}, 125, "no such container"},
		{"kill unknown", []string{"kill", "nosuchcontainer"}, 125, "no such container"},
		{"logs unknown", []string{"logs", "nosuchcontainer"}, 125, "no such container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %s", tc.code, r)
			}
			line, rest, _ := strings.Cut(r.stderr, "\n")
			if rest != "" || !strings.Contains(line, tc.want) {
				t.Errorf("want one line on stderr containing %q, got %s", tc.want, r)
			}
		})
	}
	if after := e.ok("ps", "-a", "-q", "--no-trunc"); after != before {
		t.Errorf("failed runs left containers:\nbefore %q\nafter  %q", before, after)
	}
}

func TestDetachedLifecycle(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	site := e.site("hi\n")
	envFile := e.path("f.env")
	os.WriteFile(envFile, []byte("# comment\nFROMFILE=yes\n"), 0o644)
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "web", "-e", "A=1", "--env-file", envFile,
		"-v", site+":/srv:ro", "-v", "data:/var/lib/x", "-w", "/srv", "--label", "k=v",
		img, "sh", "-c", `echo started; env | grep -E '^(A|FROMFILE)='; cat index.html; touch /srv/x 2>/dev/null || echo srv-ro; echo kept > /var/lib/x/f; trap 'echo got-hup' HUP; echo trapped; while true; do sleep 0.1; done`))
	if !isHex(id, 64) {
		t.Fatalf("run -d printed %q, want a container ID", id)
	}
	st := e.inspectContainer("web")
	if st.ID != id || st.State.Status != "running" || !st.State.Running || st.State.Pid == 0 || st.Config.WorkingDir != "/srv" {
		t.Errorf("inspect = %+v", st)
	}
	if out := e.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "web"); out != "running 0\n" {
		t.Errorf("inspect --format = %q", out)
	}
	ps := e.ok("ps")
	if !strings.HasPrefix(ps, "CONTAINER ID   IMAGE") || !strings.Contains(ps, id[:12]) || !strings.Contains(ps, "Up ") || !strings.Contains(ps, "web") {
		t.Errorf("ps:\n%s", ps)
	}
	for _, h := range []string{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"} {
		if !strings.Contains(strings.Split(ps, "\n")[0], h) {
			t.Errorf("ps header lacks %s", h)
		}
	}
	waitFor(t, func() bool { return strings.Contains(e.ok("logs", "web"), "trapped") })
	e.ok("kill", "-s", "HUP", "web")
	waitFor(t, func() bool { return strings.Contains(e.ok("logs", "web"), "got-hup") })
	logs := e.ok("logs", "web")
	for _, want := range []string{"started\n", "A=1\n", "FROMFILE=yes\n", "hi\n", "srv-ro\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if out := e.ok("logs", "--tail", "1", "web"); out != "got-hup\n" {
		t.Errorf("logs --tail 1 = %q", out)
	}
	if out := e.ok("logs", "-t", "--tail", "1", "web"); !strings.HasSuffix(out, " got-hup\n") || !strings.HasPrefix(out, time.Now().UTC().Format("2006-01-02T")) {
		t.Errorf("logs -t = %q", out)
	}
	if out := e.ok("logs", "--since", "1h", "web"); !strings.Contains(out, "started") {
		t.Errorf("logs --since 1h = %q", out)
	}
	if out := e.ok("logs", "--until", "1h", "web"); out != "" {
		t.Errorf("logs --until 1h (an hour ago) = %q", out)
	}
	start := time.Now()
	if out := e.ok("stop", "-t", "1", "web"); out != "web\n" {
		t.Errorf("stop printed %q", out)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("stop -t 1 took %v", time.Since(start))
	}
	if out := e.ok("wait", "web"); out != "137\n" {
		t.Errorf("wait = %q, want 137 (killed after the timeout: sh ignores TERM as PID 1)", out)
	}
	if out := e.ok("ps", "-a", "--filter", "status=exited", "--filter", "name=web", "--format", "{{.Names}} {{.Status}}"); !strings.HasPrefix(out, "web Exited (137) ") {
		t.Errorf("ps --filter --format = %q", out)
	}
	if out := e.ok("ps", "-q"); out != "" {
		t.Errorf("ps -q lists a stopped container: %q", out)
	}
	e.ok("rename", "web", "web2")
	e.ok("start", "web2")
	waitFor(t, func() bool { return e.inspectContainer("web2").State.Status == "running" })
	if out := e.ok("inspect", "--format", "{{.Name}}", "web2"); out != "/web2\n" {
		t.Errorf("renamed container's name = %q", out)
	}
	e.fails("rm", "web2")
	e.ok("rm", "-f", "web2")
	if out := e.ok("ps", "-a", "-q"); out != "" {
		t.Errorf("rm -f left %q", out)
	}
	// The named volume outlives the container.
	if out := e.ok("run", "--rm", "-v", "data:/d", img, "cat", "/d/f"); out != "kept\n" {
		t.Errorf("named volume content = %q", out)
	}
	if out := e.ok("volume", "ls", "-q"); !strings.Contains(out, "data\n") {
		t.Errorf("volume ls = %q", out)
	}
	e.ok("volume", "rm", "data")
	waitGone(t)
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCreateStartAttach(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	id := strings.TrimSpace(e.ok("create", "--name", "c1", img, "echo", "from-c1"))
	if st := e.inspectContainer("c1"); st.ID != id || st.State.Status != "created" {
		t.Errorf("created container: %+v", st)
	}
	if out := e.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}"); out != "c1 Created\n" {
		t.Errorf("ps -a = %q", out)
	}
	if out := e.ok("start", "-a", "c1"); out != "from-c1\n" {
		t.Errorf("start -a = %q", out)
	}
	e.ok("start", "c1")
	e.ok("wait", "c1")
	if out := e.ok("logs", "c1"); out != "from-c1\nfrom-c1\n" {
		t.Errorf("logs after two starts = %q", out)
	}
	// An image that a container uses is not removed without -f.
	e.fails("rmi", img)
	e.ok("rm", "c1")
	e.ok("rmi", img)
}

func TestUsersAndMounts(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	for _, tc := range []struct {
		user, want string
	}{
		{"", "0 0"}, {"33:33", "33 33"}, {"www-data", "33 33"}, {"nobody", "65534 65534"},
	} {
		args := []string{"run", "--rm"}
		if tc.user != "" {
			args = append(args, "-u", tc.user)
		}
		if out := strings.TrimSpace(e.ok(append(args, img, "sh", "-c", "echo $(id -u) $(id -g)")...)); out != tc.want {
			t.Errorf("-u %q: id = %q, want %q", tc.user, out, tc.want)
		}
	}
	// The user database is read after the container's mounts: one that
	// covers /etc/passwd gives root another home.
	passwd := e.path("passwd")
	if err := os.WriteFile(passwd, []byte("root:x:0:0:root:/home/elsewhere:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := strings.TrimSpace(e.ok("run", "--rm", "-v", passwd+":/etc/passwd:ro", img, "sh", "-c", "echo $HOME")); out != "/home/elsewhere" {
		t.Errorf("HOME with /etc/passwd from a volume: %q, want /home/elsewhere", out)
	}
	// A volume over /etc still gets the container's /etc files, bound
	// after it.
	etc := e.path("etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("run", "--rm", "--hostname", "voletc", "-v", etc+":/etc", img, "sh", "-c", "cat /etc/hostname; grep -c voletc /etc/hosts"); out != "voletc\n1\n" {
		t.Errorf("/etc files with a volume over /etc: %q", out)
	}
	if out := strings.TrimSpace(e.ok("run", "--rm", img, "sh", "-c", "echo $HOME")); out != "/root" {
		t.Errorf("HOME of root: %q, want /root", out)
	}
	if out := strings.TrimSpace(e.ok("run", "--rm", "--userns=keep-id", img, "id", "-u")); out != strconv.Itoa(os.Getuid()) {
		t.Errorf("--userns=keep-id: uid %q, want %d", out, os.Getuid())
	}
	// Writes to the union stay in the container; the image is unchanged.
	e.ok("run", "--name", "wr", img, "sh", "-c", "echo new > /etc/os-release")
	if out := e.ok("run", "--rm", img, "cat", "/etc/os-release"); out != osRelease {
		t.Errorf("the image changed: %q", out)
	}
	if out := e.ok("start", "-a", "wr"); out != "" {
		t.Errorf("start -a wr printed %q", out)
	}
	// Its union (with the /etc files bound on it) was unmounted cleanly,
	// both times, before the exit status came.
	id := strings.TrimSpace(e.ok("inspect", "--format", "{{.Id}}", "wr"))
	if b, err := os.ReadFile(filepath.Join(e.Root, "containers", id, "agent.log")); err != nil || strings.Contains(string(b), "unmount") {
		t.Errorf("agent.log of a container that ran and stopped: %q (%v), want no unmount error", b, err)
	}
	e.ok("rm", "wr")
	out := e.ok("run", "--rm", "--read-only", "--tmpfs", "/scratch", "--mount", "type=tmpfs,target=/t2", img, "sh", "-c",
		"touch /x 2>/dev/null || echo rootro; touch /scratch/x && echo tmpfs; touch /t2/y && echo mount-tmpfs")
	if out != "rootro\ntmpfs\nmount-tmpfs\n" {
		t.Errorf("--read-only with tmpfs: %q", out)
	}
	if out := e.ok("run", "--rm", "--ulimit", "nofile=256:512", img, "sh", "-c", "ulimit -n; ulimit -Hn"); out != "256\n512\n" {
		t.Errorf("--ulimit nofile: %q", out)
	}
	if out := e.ok("run", "--rm", "--cap-drop", "ALL", img, "sh", "-c", "grep CapEff /proc/self/status"); !strings.Contains(out, "0000000000000000") {
		t.Errorf("--cap-drop ALL: %q", out)
	}
	if out := e.ok("run", "--rm", img, "sh", "-c", "grep CapBnd /proc/self/status"); !strings.Contains(out, "00000000a80425fb") {
		t.Errorf("default capabilities are not Docker's: %q", out)
	}
	if out := e.ok("run", "--rm", "--entrypoint", "echo", img, "a", "b"); out != "a b\n" {
		t.Errorf("--entrypoint echo: %q", out)
	}
	// --init: PID 1 is roost's init from a sealed memfd, and the exit status passes through.
	r := e.run("run", "--rm", "--init", img, "sh", "-c", "readlink /proc/1/exe; echo $$ > /dev/null; echo x > /proc/1/exe 2>/dev/null || echo sealed; exit 4")
	if r.code != 4 || !strings.Contains(r.stdout, "memfd:roost-init") || !strings.Contains(r.stdout, "sealed") {
		t.Errorf("--init: %s", r)
	}
	cid := e.path("cid")
	e.ok("run", "--rm", "--cidfile", cid, img, "true")
	if b, err := os.ReadFile(cid); err != nil || !isHex(string(b), 64) {
		t.Errorf("--cidfile: %q %v", b, err)
	}
}

func TestTerminal(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	script := needTool(t, "script", "bsdutils")
	cmd := fmt.Sprintf("%s run -it --rm %s sh -c 'tty; stty size; echo $TERM'", roostBin, img)
	r := e.exe(nil, script, "-qec", cmd, "/dev/null")
	if r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/0") || !strings.Contains(r.stdout, "xterm") {
		t.Errorf("run -it under a terminal: %s", r)
	}
	r = e.exe(strings.NewReader("echo typed-$((1+2))\nexit 7\n"), script, "-qec", fmt.Sprintf("%s run -it --rm %s sh", roostBin, img), "/dev/null")
	if r.code != 7 || !strings.Contains(r.stdout, "typed-3") {
		t.Errorf("interactive shell over a pty: %s", r)
	}
}

func TestParallelRunRm(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	const n = 50
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = e.run("run", "--rm", img, "true")
		}(i)
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("run %d: %s", i, r)
		}
	}
	if out := e.ok("ps", "-a", "-q"); out != "" {
		t.Errorf("containers left: %q", out)
	}
	// A --rm agent lets the CLI go once the record is gone, and removes
	// the rest before it exits.
	waitGone(t)
	if ents, _ := os.ReadDir(filepath.Join(e.Runtime, "roost")); len(ents) != 0 {
		t.Errorf("runtime directory not empty: %d entries", len(ents))
	}
	if names := e.dirNames("containers"); len(names) != 0 {
		t.Errorf("container directories left: %q", names)
	}
}

// TestPruneLeftovers: a crash in the middle of a --rm container's removal
// leaves its directory without a record; no command lists it, and
// `container prune` and `system prune` remove it. A running container's
// directory stays.
func TestPruneLeftovers(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	kept := strings.TrimSpace(e.ok("run", "-d", "--name", "kept", img, "sleep", "300"))
	t.Cleanup(func() { e.run("rm", "-f", "kept") })
	leftover := func() string {
		id := strings.Repeat(fmt.Sprintf("%x", time.Now().UnixNano()%16), 64)
		dir := filepath.Join(e.Root, "containers", id)
		if err := os.MkdirAll(filepath.Join(dir, "diff", "upper", "etc"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "diff", "upper", "etc", "x"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, prune := range [][]string{{"container", "prune", "-f"}, {"system", "prune", "-f"}} {
		id := leftover()
		if got := e.ok("ps", "-a", "--format", "{{.Names}}"); got != "kept\n" {
			t.Errorf("ps -a with a leftover directory: %q", got)
		}
		e.ok(prune...)
		if got := e.dirNames("containers"); !slices.Equal(got, []string{kept}) {
			t.Errorf("after %s: container directories %q, want only %s's (%s)", strings.Join(prune, " "), got, "kept", id[:12])
		}
	}
}

func TestManyDetached(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	const n = 20
	for i := 0; i < n; i++ {
		e.ok("run", "-d", "--name", fmt.Sprintf("d%02d", i), img, "sleep", "300")
	}
	if got := len(strings.Fields(e.ok("ps", "-q"))); got != n {
		t.Errorf("ps lists %d running, want %d", got, n)
	}
	args := []string{"stop", "-t", "0"}
	for i := 0; i < n; i++ {
		args = append(args, fmt.Sprintf("d%02d", i))
	}
	e.ok(args...)
	if got := e.ok("ps", "-q"); got != "" {
		t.Errorf("running after stop: %q", got)
	}
	args[0], args[1], args[2] = "rm", "-v", "-f"
	e.ok(args...)
	if got := e.ok("ps", "-a", "-q"); got != "" {
		t.Errorf("left after rm: %q", got)
	}
	waitGone(t)
}

// TestRuntimeDirRemoved: the runtime directory goes while a container runs
// (logind removes /run/user/UID when the user's last session ends): exec,
// stop, start and rm -f still reach its agent.
func TestRuntimeDirRemoved(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	var rt string
	for _, line := range strings.Split(e.ok("info"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Runtime dir:"); ok {
			rt = strings.TrimSpace(v)
		}
	}
	if rt == "" {
		t.Fatal("roost info names no runtime dir")
	}
	e.ok("run", "-d", "--name", "orphan", img, "sleep", "600")
	t.Cleanup(func() { e.run("rm", "-f", "orphan") })
	var socks []string
	filepath.WalkDir(rt, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "ctl.sock" {
			socks = append(socks, p)
		}
		return nil
	})
	if len(socks) == 0 {
		t.Fatalf("no control socket under the runtime dir %s", rt)
	}
	if err := os.RemoveAll(rt); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("exec", "orphan", "echo", "still here"); out != "still here\n" {
		t.Errorf("exec after the runtime dir went: %q", out)
	}
	os.RemoveAll(rt)
	e.ok("stop", "-t", "1", "orphan")
	e.ok("start", "orphan")
	os.RemoveAll(rt)
	e.ok("rm", "-f", "orphan")
	if out := e.ok("ps", "-a", "-q"); out != "" {
		t.Errorf("after rm -f: ps -a -q = %q", out)
	}
}

func TestAgentKilled(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "victim", img, "sleep", "300"))
	ctrPid := e.inspectContainer("victim").State.Pid
	if err := syscall.Kill(e.agentPid(id), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.inspectContainer("victim").State.Status == "exited" })
	st := e.inspectContainer("victim")
	if st.State.Running || st.State.Error == "" {
		t.Errorf("after kill -9 of the agent: %+v", st.State)
	}
	waitFor(t, func() bool { return processGone(ctrPid) })
	waitGone(t)
	// A reboot empties the runtime directory: the container stays startable.
	os.RemoveAll(filepath.Join(e.Runtime, "roost"))
	if out := e.ok("ps", "-a", "--format", "{{.Names}} {{.State}}"); out != "victim exited\n" {
		t.Errorf("ps -a = %q", out)
	}
	e.ok("start", "victim")
	waitFor(t, func() bool { return e.inspectContainer("victim").State.Status == "running" })
	e.ok("rm", "-f", "victim")
	waitGone(t)
}

func TestBigOutput(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	// 100 MB in 1,000,000 lines of 100 bytes.
	line := strings.Repeat("x", 99)
	r := e.run("run", "--name", "big", img, "sh", "-c", "yes "+line+" | head -n 1000000")
	if r.code != 0 {
		t.Fatalf("%s", r.args)
	}
	if n := strings.Count(r.stdout, "\n"); n != 1000000 || len(r.stdout) != 100000000 {
		t.Errorf("run printed %d lines, %d bytes; want 1000000 and 100000000", n, len(r.stdout))
	}
	logs := e.ok("logs", "big")
	if n := strings.Count(logs, "\n"); n != 1000000 {
		t.Errorf("logs hold %d lines, want 1000000", n)
	}
	e.ok("rm", "big")
}

func TestRestartPolicies(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	e.ok("run", "-d", "--name", "fails", "--restart", "on-failure:3", img, "sh", "-c", "echo run; exit 2")
	waitFor(t, func() bool { return e.inspectContainer("fails").State.Status == "exited" })
	if out := e.ok("inspect", "--format", "{{.RestartCount}} {{.State.ExitCode}}", "fails"); out != "3 2\n" {
		t.Errorf("on-failure:3: RestartCount and exit code = %q, want 3 2", out)
	}
	if n := strings.Count(e.ok("logs", "fails"), "run\n"); n != 4 {
		t.Errorf("on-failure:3 ran %d times, want 4", n)
	}
	e.ok("run", "-d", "--name", "always", "--restart", "always", img, "sh", "-c", "echo up; sleep 0.1")
	waitFor(t, func() bool {
		var n int
		fmt.Sscan(e.ok("inspect", "--format", "{{.RestartCount}}", "always"), &n)
		return n >= 2
	})
	// stop ends the policy until the next start.
	e.ok("stop", "-t", "1", "always")
	time.Sleep(500 * time.Millisecond)
	if st := e.inspectContainer("always").State.Status; st != "exited" {
		t.Errorf("after stop: %s, want exited", st)
	}
	e.ok("restart", "always")
	waitFor(t, func() bool { return strings.Count(e.ok("logs", "always"), "up\n") >= 4 })
	e.fails("run", "--rm", "--restart", "always", img, "true")
	e.fails("run", "-d", "--restart", "sometimes", img, "true")
	e.ok("rm", "-f", "always", "fails")
	waitGone(t)
}

func TestExec(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	e.ok("run", "-d", "--name", "box", "--hostname", "exbox", "-e", "FROMRUN=1", img, "sh", "-c", "echo made > /tmp/f; exec sleep 300")
	t.Cleanup(func() { e.run("rm", "-f", "box") })
	waitFor(t, func() bool { return e.run("exec", "box", "test", "-f", "/tmp/f").code == 0 })
	// The exec'd process is a member of the container: its pid namespace,
	// hostname, files and environment.
	out := e.ok("exec", "box", "sh", "-c", "hostname; cat /tmp/f; echo $FROMRUN; ps -o pid,args | grep -c '^ *1 sleep 300$'; readlink /proc/1/exe")
	if out != "exbox\nmade\n1\n1\n/bin/busybox\n" {
		t.Errorf("exec view of the container:\n%s", out)
	}
	if out := e.ok("exec", "-e", "A=1", "-w", "/tmp", "-u", "33", "box", "sh", "-c", "echo $A $(pwd) $(id -u)"); out != "1 /tmp 33\n" {
		t.Errorf("exec -e -w -u: %q", out)
	}
	if out := e.ok("exec", "-u", "www-data", "box", "id", "-un"); out != "www-data\n" {
		t.Errorf("exec -u www-data: %q", out)
	}
	if r := e.run("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"); r.code != 5 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("exec exit status and streams: %s", r)
	}
	if r := e.run("exec", "box", "nosuchcommand"); r.code != 127 {
		t.Errorf("exec of a missing command: %s", r)
	}
	if r := e.runIn(strings.NewReader("piped\n"), "exec", "-i", "box", "cat"); r.stdout != "piped\n" {
		t.Errorf("exec -i: %s", r)
	}
	e.ok("exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d")
	waitFor(t, func() bool { return e.run("exec", "box", "cat", "/tmp/d").stdout == "detached\n" })
	script := needTool(t, "script", "bsdutils")
	if r := e.exe(nil, script, "-qec", roostBin+" exec -it box sh -c 'tty; exit 3'", "/dev/null"); r.code != 3 || !strings.Contains(r.stdout, "/dev/pts/") {
		t.Errorf("exec -it: %s", r)
	}
	e.ok("stop", "-t", "0", "box")
	line := e.fails("exec", "box", "true")
	if !strings.Contains(line, "not running") {
		t.Errorf("exec into a stopped container: %q", line)
	}
	e.fails("exec", "nosuchcontainer", "true")
}

func TestPauseTopStatsAttach(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	e.ok("run", "-d", "--name", "counter", img, "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done")
	t.Cleanup(func() { e.run("rm", "-f", "counter") })
	waitFor(t, func() bool { return strings.Count(e.ok("logs", "counter"), "\n") > 3 })
	top := e.ok("top", "counter")
	if !strings.HasPrefix(top, "UID") || !strings.Contains(top, "while true") {
		t.Errorf("top:\n%s", top)
	}
	stats := e.ok("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "counter")
	if !strings.HasPrefix(stats, "counter ") || strings.HasSuffix(stats, " 0\n") {
		t.Errorf("stats --no-stream: %q", stats)
	}
	e.ok("pause", "counter")
	if out := e.ok("inspect", "--format", "{{.State.Status}} {{.State.Paused}}", "counter"); out != "paused true\n" {
		t.Errorf("after pause: %q", out)
	}
	if out := e.ok("ps", "--format", "{{.Status}}"); !strings.Contains(out, "(Paused)") {
		t.Errorf("ps of a paused container: %q", out)
	}
	time.Sleep(200 * time.Millisecond)
	before := strings.Count(e.ok("logs", "counter"), "\n")
	time.Sleep(500 * time.Millisecond)
	if after := strings.Count(e.ok("logs", "counter"), "\n"); after != before {
		t.Errorf("a paused container wrote %d lines", after-before)
	}
	if line := e.fails("exec", "counter", "true"); !strings.Contains(line, "paused") {
		t.Errorf("exec into a paused container: %q", line)
	}
	e.ok("unpause", "counter")
	waitFor(t, func() bool { return strings.Count(e.ok("logs", "counter"), "\n") > before+3 })
	// A paused container still stops.
	e.ok("pause", "counter")
	e.ok("stop", "-t", "1", "counter")
	if st := e.inspectContainer("counter").State.Status; st != "exited" {
		t.Errorf("stop of a paused container: %s", st)
	}
	e.fails("pause", "counter")

	// attach streams a running container's output; the detach keys leave it running.
	e.ok("run", "-dit", "--name", "shell", img, "sh")
	t.Cleanup(func() { e.run("rm", "-f", "shell") })
	script := needTool(t, "script", "bsdutils")
	in := "echo attached-$((40+2))\n"
	r := e.exe(strings.NewReader(in), "sh", "-c", fmt.Sprintf("(cat; sleep 1; printf '\\020\\021'; sleep 1) | %s -qec '%s attach shell' /dev/null", script, roostBin))
	if !strings.Contains(r.stdout, "attached-42") {
		t.Errorf("attach: %s", r)
	}
	if st := e.inspectContainer("shell").State.Status; st != "running" {
		t.Errorf("after detaching: %s, want running", st)
	}
	e.fails("attach", "counter")
}

func TestSystemPrune(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	e.ok("run", "--name", "stopped", "-v", "/anon", img, "true")
	e.ok("run", "-d", "--name", "running", img, "sleep", "300")
	t.Cleanup(func() { e.run("rm", "-f", "running") })
	e.ok("volume", "create", "named")
	p := e.path("other.tar")
	smallTar(t, p, "dangling")
	e.importTar(p, "")
	if out := e.ok("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"); !strings.Contains(out, "Containers 2 1\n") || !strings.Contains(out, "Local Volumes 2 1\n") {
		t.Errorf("system df:\n%s", out)
	}
	out := e.ok("system", "prune", "-f", "--volumes")
	if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, "Deleted Images:") || !strings.Contains(out, "Deleted Volumes:") {
		t.Errorf("system prune:\n%s", out)
	}
	if got := e.ok("ps", "-a", "--format", "{{.Names}}"); got != "running\n" {
		t.Errorf("containers after prune: %q", got)
	}
	if got := e.ok("volume", "ls", "-q"); got != "named\n" {
		t.Errorf("volumes after prune: %q (named volumes stay, as Docker)", got)
	}
	if got := e.ok("images", "--format", "{{.Repository}}"); got != "busybox\n" {
		t.Errorf("images after prune: %q", got)
	}
}

func TestMoreRunFlags(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	// --device: a host device the user may open appears inside.
	if out := e.ok("run", "--rm", "--device", "/dev/zero:/dev/myzero", img, "sh", "-c", "head -c 4 /dev/myzero | wc -c"); strings.TrimSpace(out) != "4" {
		t.Errorf("--device: %q", out)
	}
	e.fails("run", "--rm", "--device", "/dev/nosuchdevice", img, "true")
	// no-new-privileges sets the flag the kernel reports.
	if out := e.ok("run", "--rm", "--security-opt", "no-new-privileges", img, "grep", "NoNewPrivs", "/proc/self/status"); !strings.Contains(out, "1") {
		t.Errorf("no-new-privileges: %q", out)
	}
	if out := e.ok("run", "--rm", img, "grep", "NoNewPrivs", "/proc/self/status"); !strings.Contains(out, "0") {
		t.Errorf("without no-new-privileges: %q", out)
	}
	// --group-add where the ids can be mapped (a subuid range).
	if os.Getenv("ROOST_TEST_SUBID") == "range" {
		if out := e.ok("run", "--rm", "--group-add", "33", img, "id", "-G"); !strings.Contains(out, "33") {
			t.Errorf("--group-add 33: %q", out)
		}
	}
	// --stop-signal reaches the process; --stop-timeout bounds the wait.
	e.ok("run", "-d", "--name", "sig", "--stop-signal", "USR1", "--stop-timeout", "5", img, "sh", "-c", "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.1; done")
	waitFor(t, func() bool { return strings.Contains(e.ok("logs", "sig"), "ready") })
	e.ok("stop", "sig")
	if out := e.ok("logs", "sig"); !strings.Contains(out, "got-usr1") {
		t.Errorf("--stop-signal USR1: logs %q", out)
	}
	if out := e.ok("inspect", "--format", "{{.State.ExitCode}}", "sig"); out != "0\n" {
		t.Errorf("exit after the stop signal: %q", out)
	}
	// -t logs the terminal stream; a detached container outlives the
	// terminal session that started it.
	script := needTool(t, "script", "bsdutils")
	r := e.exe(nil, script, "-qec", roostBin+" run -dt --name term "+img+" sh -c 'tty; sleep 300'", "/dev/null")
	if r.code != 0 {
		t.Fatalf("run -dt under a terminal: %s", r)
	}
	t.Cleanup(func() { e.run("rm", "-f", "term", "sig") })
	waitFor(t, func() bool { return strings.Contains(e.ok("logs", "term"), "/dev/pts/0") })
	time.Sleep(300 * time.Millisecond)
	if st := e.inspectContainer("term").State.Status; st != "running" {
		t.Errorf("after its terminal closed the container is %s", st)
	}
	// Signals to a foreground run reach the container (--sig-proxy).
	cmd := exec.Command(roostBin, "run", "--rm", img, "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done")
	cmd.Env = e.environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "ready" {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || !strings.Contains(out.String(), "got-term") {
		t.Errorf("SIGTERM to a foreground run: %v, output %q", err, out.String())
	}
}

// TestResourceLimits checks --memory, --cpus and --pids-limit where a cgroup
// v2 subtree is delegated (ROOST_CGROUP names it; CI's hybrid-cgroup machines
// have none), and the one-line refusal where there is none.
func TestResourceLimits(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	parent := os.Getenv("ROOST_CGROUP")
	if parent == "" {
		before := e.ok("ps", "-a", "-q")
		line := e.fails("run", "--rm", "--memory", "64m", img, "true")
		if !strings.Contains(line, "cgroup v2") {
			t.Errorf("--memory without cgroups: %q", line)
		}
		if after := e.ok("ps", "-a", "-q"); after != before {
			t.Errorf("a refused run left a container")
		}
		t.Log("no delegated cgroup v2 here (ROOST_CGROUP unset): checked the refusal only")
		return
	}
	e.extraEnv = append(e.extraEnv, "ROOST_CGROUP="+parent)
	ctrl, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if !strings.Contains(string(ctrl), "memory") || !strings.Contains(string(ctrl), "pids") {
		// A hybrid host's cgroup v2 ("unified") has the freezer but no
		// controllers: pause freezes the cgroup; limits are refused.
		id := strings.TrimSpace(e.ok("run", "-d", "--name", "frz", img, "sleep", "300"))
		t.Cleanup(func() { e.run("rm", "-f", "frz") })
		e.ok("pause", "frz")
		dir := filepath.Join(parent, "roost-"+id[:12])
		if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.events")); !strings.Contains(string(b), "frozen 1") {
			t.Errorf("cgroup %s not frozen: %s", dir, b)
		}
		if st, _ := os.ReadFile(filepath.Join(e.Root, "containers", id, "state.json")); !strings.Contains(string(st), "cgroup-v2-freezer") {
			t.Errorf("pause method not recorded: %s", st)
		}
		e.ok("unpause", "frz")
		if line := e.fails("run", "--rm", "--memory", "64m", img, "true"); !strings.Contains(line, "memory.max") {
			t.Errorf("--memory without the memory controller: %q", line)
		}
		t.Logf("cgroup v2 at %s has controllers %q: checked the freezer and the refusal of limits", parent, strings.TrimSpace(string(ctrl)))
		return
	}
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "lim", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20", img, "sleep", "300"))
	t.Cleanup(func() { e.run("rm", "-f", "lim") })
	dir := filepath.Join(parent, "roost-"+id[:12])
	for file, want := range map[string]string{"memory.max": "67108864", "cpu.max": "50000 100000", "pids.max": "20"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s/%s = %q (%v), want %q", dir, file, b, err, want)
		}
	}
	// The freezer pauses.
	e.ok("pause", "lim")
	if out := e.ok("inspect", "--format", "{{.State.Status}}", "lim"); out != "paused\n" {
		t.Errorf("paused status %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.events")); !strings.Contains(string(b), "frozen 1") {
		t.Errorf("cgroup not frozen: %s", b)
	}
	if st, _ := os.ReadFile(filepath.Join(e.Root, "containers", id, "state.json")); !strings.Contains(string(st), "cgroup-v2-freezer") {
		t.Errorf("pause method not recorded: %s", st)
	}
	e.ok("unpause", "lim")
	// The limits hold: too many processes fail to fork; too much memory is killed.
	r := e.run("run", "--rm", "--pids-limit", "5", img, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait")
	if !strings.Contains(r.stderr, "fork") && !strings.Contains(r.stderr, "Resource temporarily unavailable") {
		t.Errorf("--pids-limit 5 with 8 children: %s", r)
	}
	r = e.run("run", "--rm", "--memory", "32m", img, "sh", "-c", `x=$(head -c 100000000 /dev/zero | tr '\0' a); echo ${#x}`)
	if r.code != 137 {
		t.Errorf("--memory 32m holding 100 MB: %s, want exit 137", r)
	}
}

// TestImageMount: `image mount IMAGE -- CMD` shows the image's files at
// $ROOST_MOUNT, writable, and throws the changes away afterwards.
func TestImageMount(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	out := e.ok("image", "mount", img, "--", "sh", "-c", `cat "$ROOST_MOUNT/etc/os-release"; echo changed > "$ROOST_MOUNT/etc/os-release"; cat "$ROOST_MOUNT/etc/os-release"`)
	if out != osRelease+"changed\n" {
		t.Errorf("image mount: %q", out)
	}
	if out := e.ok("image", "mount", img, "--", "sh", "-c", `cat "$ROOST_MOUNT/etc/os-release"`); out != osRelease {
		t.Errorf("changes were kept: %q", out)
	}
	if r := e.run("image", "mount", img, "--", "sh", "-c", "exit 4"); r.code != 4 {
		t.Errorf("exit status: %s", r)
	}
	if names := e.dirNames("tmp"); len(names) != 0 {
		t.Errorf("image mount left %v in the store's tmp/", names)
	}
	e.fails("image", "mount", "nosuchimage", "--", "true")
}

// TestMergedView: the first container of an image writes the merged view of
// its layers; the next starts from it without any layer index (they are
// made unreadable here); with a single id, a -u user name is looked up in the
// image's layers, whose indexes are then read; prune removes the view with
// the last image of its layers.
func TestMergedView(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	views := func() []string { // merged/ is made by the first view
		ents, _ := os.ReadDir(filepath.Join(e.Root, "merged"))
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		return names
	}
	if len(views()) != 0 {
		t.Fatal("a merged view before any container ran")
	}
	e.ok("run", "--rm", img, "true")
	if got := views(); len(got) != 1 {
		t.Fatalf("merged/ after the first run = %q, want one view", got)
	}
	indexes, err := filepath.Glob(filepath.Join(e.Root, "layers", "*", "index"))
	if err != nil || len(indexes) == 0 {
		t.Fatalf("layer indexes: %v, %v", indexes, err)
	}
	saved := map[string][]byte{}
	for _, p := range indexes {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = b
		if err := os.WriteFile(p, []byte("not an index"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out := e.ok("run", "--rm", img, "sh", "-c", "ls /bin/busybox && cat /etc/passwd | head -1"); !strings.Contains(out, "/bin/busybox") || !strings.Contains(out, "root:") {
		t.Errorf("run from the merged view, no index: %q", out)
	}
	r := e.run("run", "--rm", "-u", "nobody", img, "id", "-u")
	if os.Getenv("ROOST_TEST_SUBID") == "range" {
		// With a range the container looks the user up itself.
		if r.code != 0 || strings.TrimSpace(r.stdout) != "65534" {
			t.Errorf("-u nobody, from the merged view: %s", r)
		}
	} else if r.code == 0 || !strings.Contains(r.stderr, "index") {
		t.Errorf("-u nobody with a single id, without the layers' indexes: %s; want the failure to read them", r)
	}
	for p, b := range saved {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out := e.ok("run", "--rm", "-u", "nobody", img, "id", "-u"); strings.TrimSpace(out) != "65534" {
		t.Errorf("-u nobody: %q", out)
	}
	e.ok("rmi", img)
	e.ok("image", "prune", "-a", "-f")
	if got := views(); len(got) != 0 {
		t.Errorf("merged/ after the image was removed and pruned = %q, want empty", got)
	}
}
