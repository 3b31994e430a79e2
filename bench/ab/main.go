// Command ab compares roost binaries on one command, in alternation: round
// after round, each binary runs the command once, so that a machine whose
// speed drifts (a shared or virtual one) weighs on all of them alike, which
// hyperfine's one-after-the-other blocks do not. It prints the median, mean
// and quartiles of each binary's wall times.
//
//	go run ./bench/ab [-n ROUNDS] BIN... -- ARGS...
//
// e.g. go run ./bench/ab -n 200 /tmp/old-roost /tmp/new-roost -- run --rm IMAGE true
// (as the user whose store has IMAGE; ROOST_ROOT and the like pass through).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"
)

func main() {
	rounds := flag.Int("n", 100, "rounds")
	warmup := flag.Int("w", 3, "rounds first run and not counted")
	flag.Parse()
	rest := flag.Args()
	sep := slices.Index(rest, "--")
	if sep < 1 || sep == len(rest)-1 {
		fmt.Fprintln(os.Stderr, "usage: ab [-n ROUNDS] [-w WARMUP] BIN... -- ARGS...")
		os.Exit(2)
	}
	bins, args := rest[:sep], rest[sep+1:]
	times := make([][]time.Duration, len(bins))
	for r := -*warmup; r < *rounds; r++ {
		for i, b := range bins {
			cmd := exec.Command(b, args...)
			cmd.Stderr = os.Stderr
			t := time.Now()
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "ab: %s: %v\n", b, err)
				os.Exit(1)
			}
			if r >= 0 {
				times[i] = append(times[i], time.Since(t))
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for i, b := range bins {
		ts := times[i]
		slices.Sort(ts)
		var sum time.Duration
		for _, t := range ts {
			sum += t
		}
		n := len(ts)
		fmt.Printf("%s: median %.2f ms, mean %.2f, quartiles %.2f-%.2f (%d rounds)\n",
			b, ms(ts[n/2]), ms(sum/time.Duration(n)), ms(ts[n/4]), ms(ts[3*n/4]), n)
	}
}
