// Package builder builds images from Dockerfiles, as `docker build` does,
// without a daemon: the Dockerfile is parsed with buildkit's own parser and
// shell lexer; each RUN runs in a rootless container of the stage's image
// (package container) and its writable layer becomes the step's layer
// (fuse.WriteLayer); COPY and ADD write their layer tar straight from the
// build context; metadata instructions only change the config and add a
// history entry.
//
// What must hold: a build adds an image and moves tags only when every step
// succeeded; until then it holds the store's writer lock, so that no prune
// takes the layers it made. Every step is recorded in the build cache
// (layers.Store.PutCache) under a key derived from its parent's key, the
// instruction after substitution, the ARG values in scope and, for COPY
// and ADD, the names, modes and contents of its sources; a step whose key
// is recorded is not run again.
package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/roost-containers/roost/container"
	"github.com/roost-containers/roost/layers"
)

// Options say what to build and where.
type Options struct {
	// ContextDir is the build context.
	ContextDir string
	// Dockerfile is the Dockerfile's path; empty means ContextDir/Dockerfile.
	// DockerfileData, when not nil, is the Dockerfile itself (-f -), and
	// Dockerfile only names it in messages.
	Dockerfile     string
	DockerfileData []byte
	Tags           []name.Tag
	BuildArgs      map[string]string
	// Target is the stage to build; empty means the last.
	Target string
	// Platform is the target platform (os/arch[/variant]) of stages
	// without FROM --platform; empty means the host's. RUN steps need an
	// image the host can run.
	Platform string
	NoCache  bool
	// Labels are set on the final image.
	Labels map[string]string
	// Network is RUN's network mode: private (default), host or none.
	Network string
	// Out gets one line per step, the steps' output and the result; ErrOut
	// gets warnings.
	Out, ErrOut io.Writer
	// Base finds (or pulls) a FROM or COPY --from image.
	Base       func(ref, platform string) (*layers.Image, error)
	Images     *layers.Store
	Containers *container.Store
	// Mapping is the kind of id mapping containers get (rootless.Mapping.Kind).
	Mapping string
	// Secrets are RUN --mount=type=secret's files by id (--secret).
	Secrets map[string]string
	// HTTP fetches ADD's URLs; nil means http.DefaultClient.
	HTTP *http.Client
}

// Error is a build that failed at a line of the Dockerfile (Line 0: not
// at any line).
type Error struct {
	File string
	Line int
	Err  error
	// Tail is the last lines a failing RUN printed.
	Tail []string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Result is a built image.
type Result struct {
	ID   v1.Hash
	Tags []string
}

// proxyArgs are passed to RUN without an ARG, and kept out of the image
// and the cache key, as Docker does.
var proxyArgs = map[string]bool{"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true, "ALL_PROXY": true, "all_proxy": true}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type build struct {
	o      Options
	file   string
	lex    *shell.Lex
	rawLex *shell.Lex
	ctx    context.Context
	bctx   *buildContext
	stages []*stageState
	meta   map[string]string // global ARG values
	used   map[string]bool   // build args that an ARG consumed
	step   int
	total  int
	tmpDir string
}

// stageState is a stage's image as the steps so far left it.
type stageState struct {
	name   string
	cfg    *v1.ConfigFile
	refs   []layers.LayerRef
	key    string
	baseID v1.Hash
	base   string
	args   map[string]string // ARGs declared in the stage and their values
	cmdSet bool
	shell  []string
	tr     *tree
}

// Build builds the image o describes and returns it.
func Build(ctx context.Context, o Options) (*Result, error) {
	b := &build{o: o, ctx: ctx, meta: map[string]string{}, used: map[string]bool{}}
	if b.o.Out == nil {
		b.o.Out = io.Discard
	}
	if b.o.ErrOut == nil {
		b.o.ErrOut = io.Discard
	}
	if b.o.Network == "" {
		b.o.Network = "private"
	}
	b.file = "Dockerfile"
	if o.Dockerfile != "" {
		b.file = filepath.Base(o.Dockerfile)
	}
	df := o.DockerfileData
	if df == nil {
		p := o.Dockerfile
		if p == "" {
			p = filepath.Join(o.ContextDir, "Dockerfile")
		}
		var err error
		if df, err = os.ReadFile(p); err != nil {
			return nil, &Error{File: b.file, Err: fmt.Errorf("cannot read the Dockerfile %s: %w", p, unwrapPath(err))}
		}
	}
	if syntax, _, _, ok := parser.DetectSyntax(df); ok {
		fmt.Fprintf(b.o.ErrOut, "WARNING: %s: the syntax directive (%s) is ignored: roost builds with its own Dockerfile frontend\n", b.file, syntax)
	}
	ast, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		return nil, b.parseError(err)
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, b.parseError(err)
	}
	if len(stages) == 0 {
		return nil, &Error{File: b.file, Err: errors.New("no FROM instruction: a Dockerfile must start with FROM (after ARGs)")}
	}
	b.lex = shell.NewLex(ast.EscapeToken)
	b.rawLex = shell.NewLex(ast.EscapeToken)
	b.rawLex.RawQuotes, b.rawLex.RawEscapes = true, true

	plat := runtime.GOARCH
	tp := v1.Platform{OS: "linux", Architecture: plat}
	if o.Platform != "" {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil {
			return nil, &Error{File: b.file, Err: fmt.Errorf("--platform %q: %w", o.Platform, err)}
		}
		tp = *p
	}
	for k, v := range map[string]string{"TARGETPLATFORM": tp.String(), "TARGETOS": tp.OS, "TARGETARCH": tp.Architecture,
		"TARGETVARIANT": tp.Variant, "BUILDPLATFORM": "linux/" + plat, "BUILDOS": "linux", "BUILDARCH": plat} {
		b.meta[k] = v
	}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			v, err := b.argValue(kv, shell.EnvsFromSlice(envOf(b.meta)))
			if err != nil {
				return nil, b.atLine(a.Location(), err)
			}
			if v != nil {
				b.meta[kv.Key] = *v
			} else {
				delete(b.meta, kv.Key)
			}
		}
	}
	target := len(stages) - 1
	if o.Target != "" {
		target = -1
		for i, s := range stages {
			if strings.EqualFold(s.Name, o.Target) {
				target = i
			}
		}
		if target < 0 {
			return nil, &Error{File: b.file, Err: fmt.Errorf("target stage %q could not be found", o.Target)}
		}
	}
	needed := b.neededStages(stages, target)
	for i, s := range stages[:target+1] {
		if needed[i] {
			b.total += 1 + len(s.Commands)
		}
	}

	unlock, err := o.Images.Writing()
	if err != nil {
		return nil, err
	}
	defer unlock()
	abs, _ := filepath.Abs(o.ContextDir)
	if b.bctx, err = openContext(o.ContextDir, filepath.Join(o.Images.CacheDir(), "context-"+hexSum([]byte(abs))[:16]+".memo")); err != nil {
		return nil, &Error{File: b.file, Err: err}
	}
	tmp, release, err := o.Images.MkdirTemp("build-")
	if err != nil {
		return nil, err
	}
	defer release()
	b.tmpDir = tmp

	for i := range stages[:target+1] {
		if !needed[i] {
			b.stages = append(b.stages, nil) // keeps stage numbers right
			continue
		}
		if err := b.buildStage(&stages[i]); err != nil {
			return nil, err
		}
	}
	var unused []string
	for k := range o.BuildArgs {
		if !b.used[k] && !proxyArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(b.o.ErrOut, "WARNING: one or more build args were not consumed: %s\n", strings.Join(unused, ", "))
	}
	res, err := b.commit(b.stages[len(b.stages)-1])
	if err == nil {
		b.bctx.saveMemo()
	}
	return res, err
}

var lineRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^dockerfile parse error on line (\d+): `) })

// parseError turns a parser error into "Dockerfile:LINE: what".
func (b *build) parseError(err error) error {
	line := 0
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		line = le.Locations[0][0].Start.Line
		err = le.Unwrap()
	}
	msg := err.Error()
	if m := lineRE().FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return &Error{File: b.file, Line: line, Err: errors.New(msg)}
}

func (b *build) atLine(loc []parser.Range, err error) error {
	line := 0
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	var be *Error
	if errors.As(err, &be) {
		if be.Line == 0 {
			be.Line = line
		}
		return err
	}
	return &Error{File: b.file, Line: line, Err: err}
}

// argValue is an ARG's value: the --build-arg, else its default; nil
// when it has neither.
func (b *build) argValue(kv instructions.KeyValuePairOptional, env shell.EnvGetter) (*string, error) {
	if v, ok := b.o.BuildArgs[kv.Key]; ok {
		b.used[kv.Key] = true
		return &v, nil
	}
	if kv.Value == nil {
		return nil, nil
	}
	v, _, err := b.lex.ProcessWord(*kv.Value, env)
	return &v, err
}

func envOf(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// printf writes a progress line.
func (b *build) printf(format string, a ...any) { fmt.Fprintf(b.o.Out, format, a...) }

func (b *build) buildStage(s *instructions.Stage) error {
	b.step++
	b.printf("STEP %d/%d: %s\n", b.step, b.total, s.SourceCode)
	metaEnv := shell.EnvsFromSlice(envOf(b.meta))
	baseName, _, err := b.lex.ProcessWord(s.BaseName, metaEnv)
	if err != nil {
		return b.atLine(s.Location, err)
	}
	platform, _, err := b.lex.ProcessWord(s.Platform, metaEnv)
	if err != nil {
		return b.atLine(s.Location, err)
	}
	if platform == "" {
		platform = b.o.Platform
	}
	st := &stageState{name: s.Name, args: map[string]string{}, base: baseName}
	if prev := b.stageNamed(baseName); prev != nil {
		st.cfg, st.refs, st.key, st.baseID, st.base = copyConfig(prev.cfg), prev.refs, prev.key, prev.baseID, prev.base
	} else if strings.EqualFold(baseName, "scratch") {
		arch, variant := runtime.GOARCH, ""
		if platform != "" {
			if p, err := v1.ParsePlatform(platform); err == nil {
				arch, variant = p.Architecture, p.Variant
			}
		}
		st.cfg = &v1.ConfigFile{Architecture: arch, Variant: variant, OS: "linux", RootFS: v1.RootFS{Type: "layers"},
			Config: v1.Config{Env: []string{defaultPath}}}
		st.key = hexSum([]byte("scratch " + platform))
	} else {
		if baseName == "" {
			return b.atLine(s.Location, errors.New("FROM names no image"))
		}
		img, err := b.o.Base(baseName, platform)
		if err != nil {
			return b.atLine(s.Location, fmt.Errorf("base image %s: %w", baseName, err))
		}
		cf, _, err := b.o.Images.Config(img.ID)
		if err != nil {
			return b.atLine(s.Location, err)
		}
		m, _, err := b.o.Images.Manifest(img)
		if err != nil {
			return b.atLine(s.Location, err)
		}
		for i, d := range cf.RootFS.DiffIDs {
			ref := layers.LayerRef{DiffID: d}
			if i < len(m.Layers) && m.Layers[i].Digest != d {
				desc := m.Layers[i]
				ref.Blob = &desc
			}
			st.refs = append(st.refs, ref)
		}
		st.cfg, st.key, st.baseID = copyConfig(cf), img.ID.Hex, img.ID
	}
	st.shell = st.cfg.Config.Shell
	triggers := st.cfg.Config.OnBuild
	st.cfg.Config.OnBuild = nil
	b.stages = append(b.stages, st)
	if len(triggers) > 0 {
		b.printf("--> Executing %d build trigger(s)\n", len(triggers))
	}
	for _, t := range triggers {
		ast, err := parser.Parse(strings.NewReader(t))
		if err == nil && len(ast.AST.Children) != 1 {
			err = fmt.Errorf("ONBUILD trigger %q is not one instruction", t)
		}
		var cmd any
		if err == nil {
			cmd, err = instructions.ParseInstruction(ast.AST.Children[0])
		}
		if err != nil {
			return b.atLine(s.Location, fmt.Errorf("ONBUILD trigger %q: %w", t, err))
		}
		c, ok := cmd.(instructions.Command)
		if !ok {
			return b.atLine(s.Location, fmt.Errorf("ONBUILD trigger %q cannot run", t))
		}
		if err := b.dispatch(st, c); err != nil {
			return b.atLine(s.Location, err)
		}
	}
	for _, c := range s.Commands {
		b.step++
		b.printf("STEP %d/%d: %s\n", b.step, b.total, c.(interface{ String() string }).String())
		if err := b.dispatch(st, c); err != nil {
			return b.atLine(c.Location(), err)
		}
	}
	return nil
}

// neededStages marks the target and the stages it builds on or copies
// from; as buildkit, only those are built.
func (b *build) neededStages(stages []instructions.Stage, target int) []bool {
	needed := make([]bool, len(stages))
	metaEnv := shell.EnvsFromSlice(envOf(b.meta))
	index := func(name string, before int) int {
		for j := before - 1; j >= 0; j-- {
			if stages[j].Name != "" && strings.EqualFold(stages[j].Name, name) {
				return j
			}
		}
		if j, err := strconv.Atoi(name); err == nil && j >= 0 && j < before {
			return j
		}
		return -1
	}
	var mark func(i int)
	mark = func(i int) {
		if needed[i] {
			return
		}
		needed[i] = true
		refs := []string{stages[i].BaseName}
		for _, c := range stages[i].Commands {
			switch c := c.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					refs = append(refs, c.From)
				}
			case *instructions.RunCommand:
				// Parses the --mount flags (dispatch parses them again,
				// with the stage's variables).
				if c.Expand(func(w string) (string, error) { return w, nil }) == nil {
					for _, m := range instructions.GetMounts(c) {
						if m.From != "" {
							refs = append(refs, m.From)
						}
					}
				}
			}
		}
		for _, r := range refs {
			name, _, err := b.lex.ProcessWord(r, metaEnv)
			if err != nil {
				name = r
			}
			if j := index(name, i); j >= 0 {
				mark(j)
			}
		}
	}
	mark(target)
	return needed
}

// stageNamed is the earlier stage called n (by name or index), or nil.
func (b *build) stageNamed(n string) *stageState {
	for _, st := range b.stages {
		if st != nil && st.name != "" && strings.EqualFold(st.name, n) {
			return st
		}
	}
	if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < len(b.stages) {
		return b.stages[i]
	}
	return nil
}

func copyConfig(cf *v1.ConfigFile) *v1.ConfigFile {
	j, _ := json.Marshal(cf)
	out := &v1.ConfigFile{}
	json.Unmarshal(j, out)
	return out
}

// env is what words of the stage are expanded with: its ARGs, then its ENV.
func (st *stageState) env() []string {
	out := envOf(st.args)
	return append(out, st.cfg.Config.Env...)
}

// runEnv is the environment of a RUN: the image's ENV and the stage's ARGs
// that ENV does not set, and proxy build args.
func (b *build) runEnv(st *stageState) []string {
	env := append([]string{}, st.cfg.Config.Env...)
	has := func(k string) bool {
		for _, kv := range env {
			if strings.HasPrefix(kv, k+"=") {
				return true
			}
		}
		return false
	}
	for _, kv := range envOf(st.args) {
		if k, _, _ := strings.Cut(kv, "="); !has(k) {
			env = append(env, kv)
		}
	}
	for k, v := range b.o.BuildArgs {
		if proxyArgs[k] && !has(k) {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// commitStep runs one step through the cache: when key's record exists its
// config becomes the stage's; otherwise do makes the new config from a
// copy of the stage's and returns the layer it added (nil for none).
func (b *build) commitStep(st *stageState, payload, createdBy string, do func(cf *v1.ConfigFile) (*v1.Hash, error)) error {
	key := hexSum([]byte(st.key + "\x00" + payload + "\x00" + strings.Join(envOf(st.args), "\x00")))
	if !b.o.NoCache {
		if raw, ok := b.o.Images.Cache(key); ok {
			cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
			if err == nil {
				st.setConfig(cf, key)
				b.printf("--> Using cache %s\n", hexSum(raw))
				return nil
			}
		}
	}
	cf := copyConfig(st.cfg)
	layer, err := do(cf)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	h := v1.History{Created: v1.Time{Time: now}, CreatedBy: createdBy, Comment: "buildkit.dockerfile.v0", EmptyLayer: layer == nil}
	if layer != nil {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, *layer)
	}
	cf.History = append(cf.History, h)
	cf.Created = v1.Time{Time: now}
	raw, err := json.Marshal(cf)
	if err != nil {
		return err
	}
	if err := b.o.Images.PutCache(key, raw); err != nil {
		return err
	}
	st.setConfig(cf, key)
	b.printf("--> %s\n", hexSum(raw)[:12])
	return nil
}

func (st *stageState) setConfig(cf *v1.ConfigFile, key string) {
	var refs []layers.LayerRef
	for i, d := range cf.RootFS.DiffIDs {
		if i < len(st.refs) && st.refs[i].DiffID == d {
			refs = append(refs, st.refs[i])
		} else {
			refs = append(refs, layers.LayerRef{DiffID: d})
		}
	}
	if len(refs) != len(st.refs) || st.tr != nil && len(st.tr.tars) != len(refs) {
		st.tr = nil
	}
	st.cfg, st.refs, st.key = cf, refs, key
}

// tree is the stage's current file tree.
func (b *build) tree(st *stageState) (*tree, error) {
	if st.tr == nil || len(st.tr.tars) != len(st.cfg.RootFS.DiffIDs) {
		t, err := loadTree(b.o.Images, st.cfg.RootFS.DiffIDs)
		if err != nil {
			return nil, err
		}
		st.tr = t
	}
	return st.tr, nil
}

// commit stores the final image and points the tags at it.
func (b *build) commit(st *stageState) (*Result, error) {
	cf := copyConfig(st.cfg)
	if len(b.o.Labels) > 0 {
		if cf.Config.Labels == nil {
			cf.Config.Labels = map[string]string{}
		}
		for k, v := range b.o.Labels {
			cf.Config.Labels[k] = v
		}
	}
	if n := len(cf.History); n > 0 {
		cf.Created = cf.History[n-1].Created
	}
	raw, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, t := range b.o.Tags {
		tags = append(tags, layers.Normalized(t))
	}
	if len(tags) > 0 {
		b.printf("COMMIT %s\n", strings.Join(tags, ", "))
	} else {
		b.printf("COMMIT\n")
	}
	id, err := b.o.Images.AddImage(raw, st.refs, b.o.Tags)
	if err != nil {
		return nil, err
	}
	b.printf("--> %s\n", id.Hex[:12])
	for _, t := range tags {
		b.printf("Successfully tagged %s\n", t)
	}
	b.printf("%s\n", id.Hex)
	return &Result{ID: id, Tags: tags}, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
