package cli

import (
	"os"
	"strings"

	"github.com/roost-containers/roost/config"
	"github.com/roost-containers/roost/container"
)

// earlyAgent is the agent `roost run` starts before it parses its command
// line (see startEarly), for the run command to take.
type earlyAgent struct {
	id    string
	agent *container.Prespawned
}

var early *earlyAgent

// startEarly starts the agent of `roost run ARGS...` at once, before the
// command line is parsed, which takes about a millisecond of the agent's
// critical path: from the arguments it guesses whether the run is
// detached and whether it joins another container's network (then its
// agent is started elsewhere). A wrong guess costs only a second agent:
// Start closes the early one where it does not fit (another store, attach
// or network) and starts one that does.
// Global flags before `run` (--root, --config) leave it to runCommand.
func startEarly(args []string) {
	attach, ok := earlyGuess(args)
	if !ok {
		return
	}
	p, explicit := os.Getenv("ROOST_CONFIG"), true
	if p == "" {
		p, explicit = config.DefaultPath(), false
	}
	cfg, err := config.Load(p, explicit)
	if err != nil {
		return // runCommand reports it
	}
	if r := os.Getenv("ROOST_ROOT"); r != "" {
		cfg.Root = r
	}
	cs, err := container.OpenStore(cfg.Root, cfg.RunRoot)
	if err != nil {
		return
	}
	id := container.NewID()
	early = &earlyAgent{id: id, agent: cs.Prespawn(id, attach)}
}

// earlyGuess reads a command line for startEarly: ok for `roost run ...`
// that does not join another container's network, with attach unless a
// -d (alone or among -i, -t, -P) or --detach is seen.
func earlyGuess(args []string) (attach, ok bool) {
	if len(args) < 2 || args[1] != "run" {
		return false, false
	}
	attach = true
	rest := args[2:]
	for i, a := range rest {
		switch {
		case a == "--":
			return attach, true
		case a == "--detach" || a == "--detach=true":
			attach = false
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Trim(a[1:], "ditP") == "" && strings.Contains(a, "d"):
			attach = false
		case (a == "--network" || a == "--net") && i+1 < len(rest) && strings.HasPrefix(rest[i+1], "container:"):
			return false, false
		case strings.HasPrefix(a, "--network=container:") || strings.HasPrefix(a, "--net=container:"):
			return false, false
		}
	}
	return attach, true
}

// takeEarly returns the early agent, if any, and its container ID. Start
// closes an agent that turns out not to fit (another store, attach or
// network) and starts one that does.
func takeEarly() (string, *container.Prespawned) {
	e := early
	early = nil
	if e == nil {
		return "", nil
	}
	return e.id, e.agent
}
