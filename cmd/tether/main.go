// Command tether opens persistent, reconnectable remote shell sessions over
// SSH. `tether serve` is the host agent; every other subcommand is the client.
package main

import (
	"os"
	"runtime/debug"

	"github.com/tether-sh/tether/internal/cli"
	"github.com/tether-sh/tether/internal/oneproc"
)

// clientGCPercent is the GOGC of client commands. x/crypto/ssh allocates a
// buffer per received packet (32 KiB), so a client receiving bulk output
// allocates as fast as it receives; at the default 100 the collector ran
// every few MiB and took a quarter of the CLI's CPU for 1 GiB of output
// (#18). A client's live heap is small, so 4× more headroom costs little.
// The agent and session hosts (long-lived, thousands of them) keep the
// default; GOGC in the environment wins.
const clientGCPercent = 400

func main() {
	args := os.Args[1:]
	if _, set := os.LookupEnv("GOGC"); !set && isClient(args) {
		debug.SetGCPercent(clientGCPercent)
	}
	cli.AllProcessors = oneproc.Restore
	os.Exit(cli.Main(args))
}

// isClient reports whether args run a client command, not a server one.
func isClient(args []string) bool { return !oneproc.Server(args) }
