package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/layers"
	"github.com/urfave/cli/v2"
)

// remoteOptions are the registry settings of the configuration.
func remoteOptions(c *cli.Context) layers.RemoteOptions {
	r := envOf(c).cfg.Registries
	o := layers.RemoteOptions{Insecure: r.Insecure, Mirrors: r.Mirrors}
	if c.IsSet("tls-verify") && !c.Bool("tls-verify") {
		o.SkipTLSVerify = true
	}
	return o
}

// tlsVerifyFlag is pull's, push's and login's --tls-verify.
func tlsVerifyFlag() cli.Flag {
	return &cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "verify the registry's TLS certificate and require HTTPS (--tls-verify=false skips both for this command); trust a CA with $XDG_CONFIG_HOME/roost/certs.d/HOST:PORT/ca.crt"}
}

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "Download an image from a registry",
		ArgsUsage: "NAME[:TAG|@DIGEST]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "platform", Usage: "pull this platform (os/arch[/variant]) of a multi-platform image; default the host's"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only print the image's reference"},
			tlsVerifyFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "exactly one NAME[:TAG|@DIGEST]"); err != nil {
				return err
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			o := remoteOptions(c)
			o.Platform = c.String("platform")
			return pullImage(c, s, c.Args().First(), o, c.App.Writer, c.Bool("quiet"), "")
		},
	}
}

// pullImage pulls ref, printing progress to w as Docker does (only the
// reference when quiet). preface, when set, is printed first, once the
// registry has answered.
func pullImage(c *cli.Context, s *layers.Store, ref string, o layers.RemoteOptions, w io.Writer, quiet bool, preface string) error {
	r, err := layers.ParseReference(ref)
	if err != nil {
		return err
	}
	if !quiet {
		pp := newProgressPrinter(w)
		pp.header = fmt.Sprintf("%s%s: Pulling from %s", preface, r.Identifier(), r.Context().RepositoryStr())
		o.Progress = pp.event
	}
	res, err := s.Pull(c.Context, ref, o)
	if err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintln(w, "Digest: "+res.Digest.String())
		if res.UpToDate {
			fmt.Fprintln(w, "Status: Image is up to date for "+layers.FamiliarString(r))
		} else {
			fmt.Fprintln(w, "Status: Downloaded newer image for "+layers.FamiliarString(r))
		}
	}
	_, err = fmt.Fprintln(w, layers.Normalized(r))
	return err
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "Push an image to a registry",
		ArgsUsage: "NAME[:TAG]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "suppress the progress output"},
			tlsVerifyFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "exactly one NAME[:TAG]"); err != nil {
				return err
			}
			ref := c.Args().First()
			r, err := layers.ParseReference(ref)
			if err != nil {
				return err
			}
			s, err := openStore(c)
			if err != nil {
				return err
			}
			o := remoteOptions(c)
			w := c.App.Writer
			if !c.Bool("quiet") {
				pp := newProgressPrinter(w)
				pp.header = fmt.Sprintf("The push refers to repository [%s]", layers.FamiliarRepository(r.Context()))
				o.Progress = pp.event
			}
			res, err := s.Push(c.Context, ref, o)
			if err != nil {
				return err
			}
			if c.Bool("quiet") {
				_, err = fmt.Fprintln(w, layers.Normalized(r))
				return err
			}
			_, err = fmt.Fprintf(w, "%s: digest: %s size: %d\n", r.Identifier(), res.Digest, res.Size)
			return err
		},
	}
}

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:      "login",
		Usage:     "Log in to a registry",
		ArgsUsage: "[SERVER]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "username"},
			&cli.StringFlag{Name: "password", Aliases: []string{"p"}, Usage: "password (visible to other users: prefer --password-stdin)"},
			&cli.BoolFlag{Name: "password-stdin", Usage: "take the password from STDIN"},
			tlsVerifyFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1, "at most one SERVER"); err != nil {
				return err
			}
			user, pass := c.String("username"), c.String("password")
			in, _ := c.App.Reader.(*os.File)
			tty := in != nil && isTerminal(in)
			if c.Bool("password-stdin") {
				if pass != "" {
					return errors.New("login: --password and --password-stdin are mutually exclusive")
				}
				if user == "" {
					return errors.New("login: --password-stdin needs --username")
				}
				b, err := io.ReadAll(c.App.Reader)
				if err != nil {
					return fmt.Errorf("login: read password: %w", err)
				}
				pass = strings.TrimRight(string(b), "\r\n")
			}
			if user == "" && tty {
				fmt.Fprint(c.App.Writer, "Username: ")
				line, err := bufio.NewReader(in).ReadString('\n')
				if err != nil {
					return fmt.Errorf("login: read username: %w", err)
				}
				user = strings.TrimSpace(line)
			}
			if pass == "" && tty {
				fmt.Fprint(c.App.Writer, "Password: ")
				p, err := readSecret(in)
				fmt.Fprintln(c.App.Writer)
				if err != nil {
					return fmt.Errorf("login: read password: %w", err)
				}
				pass = p
			}
			if user == "" || pass == "" {
				return errors.New("login: a username and a password are needed: give -u USER and --password-stdin")
			}
			if c.IsSet("password") {
				fmt.Fprintln(c.App.ErrWriter, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
			}
			if _, err := layers.Login(c.Context, c.Args().First(), user, pass, remoteOptions(c)); err != nil {
				return err
			}
			_, err := fmt.Fprintln(c.App.Writer, "Login Succeeded")
			return err
		},
	}
}

// readSecret reads a line from the terminal without echoing it.
func readSecret(f *os.File) (string, error) {
	restore, err := makeRaw(f)
	if err != nil {
		return "", err
	}
	defer restore()
	var b []byte
	buf := make([]byte, 1)
	for {
		if _, err := f.Read(buf); err != nil {
			return "", err
		}
		switch buf[0] {
		case '\r', '\n':
			return string(b), nil
		case 3: // ^C
			return "", errors.New("interrupted")
		case 127, 8:
			if len(b) > 0 {
				b = b[:len(b)-1]
			}
		default:
			b = append(b, buf[0])
		}
	}
}

func logoutCommand() *cli.Command {
	return &cli.Command{
		Name:      "logout",
		Usage:     "Log out from a registry",
		ArgsUsage: "[SERVER]",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1, "at most one SERVER"); err != nil {
				return err
			}
			server, found, err := layers.Logout(c.Args().First(), remoteOptions(c))
			if err != nil {
				return err
			}
			if !found {
				_, err = fmt.Fprintf(c.App.Writer, "Not logged in to %s\n", server)
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "Removing login credentials for %s\n", server)
			return err
		},
	}
}

// pullPolicy is run's and create's --pull.
func pullPolicy(c *cli.Context) (string, error) {
	switch p := c.String("pull"); p {
	case "", "missing":
		return "missing", nil
	case "always", "never":
		return p, nil
	default:
		return "", fmt.Errorf("invalid --pull %q: use missing, always or never", p)
	}
}

// resolveOrPull resolves ref in the store, pulling it first as --pull says.
// Progress goes to stderr, as Docker's run does, so stdout stays the container's.
func resolveOrPull(c *cli.Context, is *layers.Store, ref string) (*layers.Image, error) {
	policy, err := pullPolicy(c)
	if err != nil {
		return nil, err
	}
	if policy != "always" {
		img, err := is.Resolve(ref)
		if err == nil || !errors.Is(err, layers.ErrNotFound) {
			return img, err
		}
		if policy == "never" {
			return nil, fmt.Errorf("unable to find image %q locally, and --pull never forbids pulling it", ref)
		}
		if _, perr := layers.ParseReference(ref); perr != nil {
			return nil, err
		}
		preface := fmt.Sprintf("Unable to find image '%s' locally\n", ref)
		if err := pullImage(c, is, ref, remoteOptions(c), c.App.ErrWriter, false, preface); err != nil {
			return nil, fmt.Errorf("unable to find image %q locally: %w", ref, err)
		}
		return is.Resolve(ref)
	}
	if err := pullImage(c, is, ref, remoteOptions(c), c.App.ErrWriter, false, ""); err != nil {
		return nil, err
	}
	return is.Resolve(ref)
}

// progressPrinter prints pull and push progress as Docker does: one line
// per layer, redrawn in place on a terminal, plain lines otherwise.
type progressPrinter struct {
	w io.Writer
	// header is printed before the first event: once the registry has
	// answered, so that a failure prints only the error.
	header string
	tty    bool
	order  []v1.Hash
	pos    map[v1.Hash]int
	last   map[v1.Hash]string
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	f, ok := w.(*os.File)
	return &progressPrinter{w: w, tty: ok && isTerminal(f), pos: map[v1.Hash]int{}, last: map[v1.Hash]string{}}
}

func (p *progressPrinter) event(ev layers.Progress) {
	if p.header != "" {
		fmt.Fprintln(p.w, p.header)
		p.header = ""
	}
	id := ev.Digest.Hex
	if len(id) > 12 {
		id = id[:12]
	}
	line := id + ": " + ev.Status
	if ev.Status == layers.StatusDownloading || ev.Status == layers.StatusPushing {
		if !p.tty {
			return
		}
		line += " " + progressBar(ev.Current, ev.Total)
	}
	if !p.tty {
		if p.last[ev.Digest] != line {
			p.last[ev.Digest] = line
			fmt.Fprintln(p.w, line)
		}
		return
	}
	i, ok := p.pos[ev.Digest]
	if !ok {
		p.pos[ev.Digest] = len(p.order)
		p.order = append(p.order, ev.Digest)
		fmt.Fprintf(p.w, "%s\n", line)
		return
	}
	up := len(p.order) - i
	fmt.Fprintf(p.w, "\x1b[%dA\r\x1b[2K%s\r\x1b[%dB", up, line, up)
}

// progressBar draws Docker's "[=====>    ]  1.2MB/3.4MB".
func progressBar(cur, total int64) string {
	const width = 50
	if total <= 0 {
		return humanSize(cur)
	}
	n := int(min(cur, total) * width / total)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("[%s]  %s/%s", bar, humanSize(cur), humanSize(total))
}
