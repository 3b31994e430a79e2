package layers

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// ParseReference normalizes an image reference as Docker does: "busybox" is
// docker.io/library/busybox:latest. The error says what is wrong with s.
func ParseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, name.WithDefaultRegistry("docker.io"))
	if err == nil {
		err = checkNameLength(ref.Context())
	}
	if err != nil {
		return nil, fmt.Errorf("invalid reference %q: %s", s, refProblem(s, err))
	}
	return ref, nil
}

// nameMax is the longest repository name, registry included, as Docker
// counts it: docker.io/library/busybox is 24 characters.
const nameMax = 255

// checkNameLength applies Docker's limit to the full name: go-containerregistry
// checks the name before it adds library/, so a name it accepts could fail
// to parse again once normalized.
func checkNameLength(repo name.Repository) error {
	if n := len(registry(repo)) + 1 + len(repo.RepositoryStr()); n > nameMax {
		return fmt.Errorf("repository name must not be more than %d characters (it is %d with its registry)", nameMax, n)
	}
	return nil
}

// ParseTag is ParseReference for references that must name a tag.
func ParseTag(s string) (name.Tag, error) {
	if strings.Contains(s, "@") {
		return name.Tag{}, fmt.Errorf("invalid reference %q: a digest cannot be used as a tag", s)
	}
	t, err := name.NewTag(s, name.WithDefaultRegistry("docker.io"))
	if err == nil {
		err = checkNameLength(t.Context())
	}
	if err != nil {
		return name.Tag{}, fmt.Errorf("invalid reference %q: %s", s, refProblem(s, err))
	}
	return t, nil
}

func refProblem(s string, err error) string {
	if strings.ToLower(s) != s && !strings.Contains(s, "@") {
		return "repository names must be lowercase"
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 && strings.Contains(msg[:i], "could not parse") {
		msg = msg[i+2:]
	}
	if msg == s {
		return "want [registry/]repository[:tag] or repository@sha256:<digest>"
	}
	return msg
}

// Normalized is the full form stored in the store: docker.io/library/busybox:latest.
func Normalized(ref name.Reference) string {
	return registry(ref.Context()) + "/" + ref.Context().RepositoryStr() + sep(ref) + ref.Identifier()
}

// registry is the repository's registry host, with Docker Hub spelled docker.io.
func registry(repo name.Repository) string {
	if r := repo.RegistryStr(); r != name.DefaultRegistry {
		return r
	}
	return "docker.io"
}

func sep(ref name.Reference) string {
	if _, ok := ref.(name.Digest); ok {
		return "@"
	}
	return ":"
}

// FamiliarRepository is the repository as Docker prints it: "busybox" for
// docker.io/library/busybox, "me/app" for docker.io/me/app.
func FamiliarRepository(repo name.Repository) string {
	r := registry(repo)
	p := repo.RepositoryStr()
	if r == "docker.io" {
		return strings.TrimPrefix(p, "library/")
	}
	return r + "/" + p
}

// FamiliarString is the reference as Docker prints it: busybox:latest.
func FamiliarString(ref name.Reference) string {
	return FamiliarRepository(ref.Context()) + sep(ref) + ref.Identifier()
}
