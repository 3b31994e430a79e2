// Command roost runs OCI and Docker images for an unprivileged user: no
// daemon, no root. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/roost-containers/roost/cli"
	"github.com/roost-containers/roost/rootless"
)

func main() {
	rootless.MaybeRunChild() // a re-executed child never returns from here
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
