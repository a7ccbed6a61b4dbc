// Command tether opens persistent, reconnectable remote shell sessions over
// SSH. `tether serve` is the host agent; every other subcommand is the client.
package main

import (
	"os"

	"github.com/tether-sh/tether/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
