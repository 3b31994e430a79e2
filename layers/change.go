package layers

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// ApplyChange applies one Dockerfile instruction, as `docker import --change`
// takes it (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME,
// WORKDIR, STOPSIGNAL), to cfg.
func ApplyChange(cfg *v1.Config, change string) error {
	res, err := parser.Parse(strings.NewReader(change))
	if err != nil {
		return fmt.Errorf("parse change %q: %w", change, err)
	}
	if len(res.AST.Children) != 1 {
		return fmt.Errorf("parse change %q: want exactly one instruction", change)
	}
	ins, err := instructions.ParseInstruction(res.AST.Children[0])
	if err != nil {
		return fmt.Errorf("parse change %q: %w", change, err)
	}
	// Quotes and variables as Docker's: ENV B="two words" sets B=two words.
	if ex, ok := ins.(instructions.SupportsSingleWordExpansion); ok {
		lex := shell.NewLex(res.EscapeToken)
		err := ex.Expand(func(w string) (string, error) {
			s, _, err := lex.ProcessWord(w, shell.EnvsFromSlice(cfg.Env))
			return s, err
		})
		if err != nil {
			return fmt.Errorf("parse change %q: %w", change, err)
		}
	}
	shell := func(c instructions.ShellDependantCmdLine) []string {
		if c.PrependShell {
			return []string{"/bin/sh", "-c", strings.Join(c.CmdLine, " ")}
		}
		return c.CmdLine
	}
	switch c := ins.(type) {
	case *instructions.CmdCommand:
		cfg.Cmd = shell(c.ShellDependantCmdLine)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = shell(c.ShellDependantCmdLine)
		if !c.PrependShell || len(c.CmdLine) > 0 {
			cfg.Cmd = nil
		}
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.ExposeCommand:
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range c.Ports {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.WorkdirCommand:
		cfg.WorkingDir = c.Path
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
	default:
		return fmt.Errorf("change %q: %s cannot be applied to an imported image (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR or STOPSIGNAL)", change, strings.ToUpper(res.AST.Children[0].Value))
	}
	return nil
}

// setEnv sets key=value in env, replacing an earlier value.
func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}
