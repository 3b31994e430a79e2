package container

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// tracing is set by ROOST_TRACE: each process of a container start then
// writes "roost-trace ROLE EVENT UNIXNANOS" lines, to see where start-up
// time goes. ROOST_TRACE=1 writes them to each process's stderr (the
// agent's goes to agent.log, which a --rm container takes along);
// ROOST_TRACE=/ABSOLUTE/FILE appends them all to that file.
var tracing = os.Getenv("ROOST_TRACE") != ""

// traceOut is where trace lines go, opened at the first (before init leaves
// the host's root).
var traceOut = sync.OnceValue(func() io.Writer {
	if p := os.Getenv("ROOST_TRACE"); filepath.IsAbs(p) {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
			return f
		}
	}
	return os.Stderr
})

// Trace writes one trace line when tracing.
func Trace(role, event string) {
	if tracing {
		fmt.Fprintf(traceOut(), "roost-trace %s %s %d\n", role, event, time.Now().UnixNano())
	}
}
