package builder

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/roost-containers/roost/container"
)

// dispatch runs one instruction of stage st.
func (b *build) dispatch(st *stageState, cmd instructions.Command) error {
	env := shell.EnvsFromSlice(st.env())
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		err := ex.Expand(func(w string) (string, error) {
			s, _, err := b.lex.ProcessWord(w, env)
			return s, err
		})
		if err != nil {
			return err
		}
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
		err := ex.ExpandRaw(func(w string) (string, error) {
			s, _, err := b.rawLex.ProcessWord(w, env)
			return s, err
		})
		if err != nil {
			return err
		}
	}
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		return b.run(st, c)
	case *instructions.CopyCommand:
		// --link makes the same files; only how buildkit rebases the
		// layer differs, and every roost COPY layer stands alone anyway.
		return b.copy(st, c.SourcesAndDest, copyFlags{from: c.From, chown: c.Chown, chmod: c.Chmod, unsupported: unsupportedCopy(c.ExcludePatterns, c.Parents, nil)})
	case *instructions.AddCommand:
		return b.copy(st, c.SourcesAndDest, copyFlags{chown: c.Chown, chmod: c.Chmod, add: true, checksum: c.Checksum, unsupported: unsupportedCopy(c.ExcludePatterns, false, c.KeepGitDir)})
	case *instructions.ArgCommand:
		var parts []string
		for _, kv := range c.Args {
			v, err := b.argValue(kv, env)
			if err != nil {
				return err
			}
			if v == nil {
				if mv, ok := b.meta[kv.Key]; ok {
					v = &mv
				}
			}
			if v != nil {
				st.args[kv.Key] = *v
				parts = append(parts, kv.Key+"="+*v)
			} else {
				delete(st.args, kv.Key)
				parts = append(parts, kv.Key)
			}
		}
		return b.meta1(st, "ARG "+strings.Join(parts, " "), func(*v1.Config) {})
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return b.meta1(st, "ENV "+strings.Join(parts, " "), func(cfg *v1.Config) {
			for _, kv := range c.Env {
				cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
			}
		})
	case *instructions.LabelCommand:
		var parts []string
		for _, kv := range c.Labels {
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return b.meta1(st, "LABEL "+strings.Join(parts, " "), func(cfg *v1.Config) {
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			for _, kv := range c.Labels {
				cfg.Labels[kv.Key] = kv.Value
			}
		})
	case *instructions.MaintainerCommand:
		return b.metaFile(st, "MAINTAINER "+c.Maintainer, func(cf *v1.ConfigFile) { cf.Author = c.Maintainer })
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			ports = append(ports, strings.ToLower(p))
		}
		return b.meta1(st, "EXPOSE "+strings.Join(ports, " "), func(cfg *v1.Config) {
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range ports {
				cfg.ExposedPorts[p] = struct{}{}
			}
		})
	case *instructions.UserCommand:
		return b.meta1(st, "USER "+c.User, func(cfg *v1.Config) { cfg.User = c.User })
	case *instructions.VolumeCommand:
		return b.meta1(st, "VOLUME "+jsonString(c.Volumes), func(cfg *v1.Config) {
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			for _, v := range c.Volumes {
				cfg.Volumes[v] = struct{}{}
			}
		})
	case *instructions.StopSignalCommand:
		if _, err := container.ParseSignal(c.Signal); err != nil {
			return err
		}
		return b.meta1(st, "STOPSIGNAL "+c.Signal, func(cfg *v1.Config) { cfg.StopSignal = c.Signal })
	case *instructions.WorkdirCommand:
		wd := c.Path
		if !path.IsAbs(wd) {
			base := st.cfg.Config.WorkingDir
			if base == "" {
				base = "/"
			}
			wd = path.Join(base, wd)
		}
		wd = path.Clean(wd)
		return b.meta1(st, "WORKDIR "+wd, func(cfg *v1.Config) { cfg.WorkingDir = wd })
	case *instructions.CmdCommand:
		argv := b.withShell(st, c.ShellDependantCmdLine)
		st.cmdSet = true
		return b.meta1(st, "CMD "+jsonString(argv), func(cfg *v1.Config) { cfg.Cmd = argv })
	case *instructions.EntrypointCommand:
		argv := b.withShell(st, c.ShellDependantCmdLine)
		keepCmd := st.cmdSet
		return b.meta1(st, "ENTRYPOINT "+jsonString(argv), func(cfg *v1.Config) {
			cfg.Entrypoint = argv
			if !keepCmd {
				cfg.Cmd = nil
			}
		})
	case *instructions.HealthCheckCommand:
		h := c.Health
		hc := &v1.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
		return b.meta1(st, "HEALTHCHECK "+jsonString(hc), func(cfg *v1.Config) { cfg.Healthcheck = hc })
	case *instructions.ShellCommand:
		st.shell = c.Shell
		return b.meta1(st, "SHELL "+jsonString(c.Shell), func(cfg *v1.Config) { cfg.Shell = c.Shell })
	case *instructions.OnbuildCommand:
		return b.meta1(st, "ONBUILD "+c.Expression, func(cfg *v1.Config) { cfg.OnBuild = append(cfg.OnBuild, c.Expression) })
	}
	return fmt.Errorf("%s is not supported by roost", strings.ToUpper(cmd.Name()))
}

// unsupportedCopy names the first COPY or ADD flag roost does not do yet.
func unsupportedCopy(exclude []string, parents bool, keepGitDir *bool) string {
	switch {
	case len(exclude) > 0:
		return "--exclude"
	case parents:
		return "--parents"
	case keepGitDir != nil:
		return "--keep-git-dir"
	}
	return ""
}

// meta1 commits a metadata-only step that changes the runtime config.
func (b *build) meta1(st *stageState, createdBy string, apply func(*v1.Config)) error {
	return b.metaFile(st, createdBy, func(cf *v1.ConfigFile) { apply(&cf.Config) })
}

// metaFile commits a metadata-only step: a history entry, no layer.
func (b *build) metaFile(st *stageState, createdBy string, apply func(*v1.ConfigFile)) error {
	probe := copyConfig(st.cfg)
	apply(probe)
	probe.History, probe.RootFS, probe.Created = nil, v1.RootFS{}, v1.Time{}
	payload, err := json.Marshal(probe)
	if err != nil {
		return err
	}
	return b.commitStep(st, "META "+createdBy+"\x00"+string(payload), createdBy, func(cf *v1.ConfigFile) (*v1.Hash, error) {
		apply(cf)
		return nil, nil
	})
}

// withShell is a CMD, ENTRYPOINT or RUN command line as argv: the shell
// form runs in the stage's SHELL.
func (b *build) withShell(st *stageState, c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return append([]string{}, c.CmdLine...)
	}
	sh := st.shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	script := strings.Join(c.CmdLine, " ")
	if len(c.Files) > 0 {
		if len(c.Files) == 1 && isHeredocOnly(c.CmdLine, c.Files[0].Name) {
			script = c.Files[0].Data
			if c.Files[0].Chomp {
				script = parser.ChompHeredocContent(script)
			}
		} else {
			// The shell reads the heredocs itself (<<- included).
			var sb strings.Builder
			sb.WriteString(script)
			for _, f := range c.Files {
				sb.WriteString("\n" + f.Data + f.Name)
			}
			script = sb.String()
		}
	}
	return append(append([]string{}, sh...), script)
}

// isHeredocOnly reports whether a RUN is nothing but one heredoc (RUN <<EOF).
func isHeredocOnly(cmdline []string, name string) bool {
	if len(cmdline) != 1 {
		return false
	}
	w := strings.TrimLeft(strings.TrimPrefix(strings.TrimSpace(cmdline[0]), "<<"), "-")
	return strings.Trim(w, `"'`) == name
}

func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if ek, _, _ := strings.Cut(kv, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var errUnsupportedFlag = errors.New("is not supported by roost yet")
