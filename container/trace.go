package container

import (
	"fmt"
	"os"
	"time"
)

// tracing is set by ROOST_TRACE=1: each process of a container start then
// writes "roost-trace ROLE EVENT UNIXNANOS" lines to its stderr (the agent's
// goes to agent.log), to see where start-up time goes.
var tracing = os.Getenv("ROOST_TRACE") != ""

// Trace writes one trace line when tracing.
func Trace(role, event string) {
	if tracing {
		fmt.Fprintf(os.Stderr, "roost-trace %s %s %d\n", role, event, time.Now().UnixNano())
	}
}
