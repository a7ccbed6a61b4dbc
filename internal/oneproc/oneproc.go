// Package oneproc starts every tether client process (not serve,
// session-host, mux-master, sftp-server) on one scheduler processor
// (GOMAXPROCS=1), from a package init that runs right after os's, before
// most others, and gives the others back to the commands that want them
// (Restore).
//
// Why (#18): a fresh `tether invoke H/S true` is mostly the Go runtime's
// and the packages' start. With a second processor idle, every goroutine
// started or woken there (the runtime's own, the packages', the client's)
// woke or cloned a thread on the other core, and each page fault of a
// process with threads on both cores paid a TLB shoot-down. Going down to
// one processor later (main, or the 20 ms tuning of invoke) is dearer:
// dropping a processor flushes its cached spans into fresh span-set
// blocks, ~80 page faults. Set GOMAXPROCS in the environment to choose.
package oneproc

import (
	"os"
	"runtime"
	"slices"
)

// procs is the processor count the runtime chose; 0 when this package
// left it alone (GOMAXPROCS was set).
var procs int

func init() {
	if _, set := os.LookupEnv("GOMAXPROCS"); set || Server(os.Args[1:]) {
		return
	}
	procs = runtime.GOMAXPROCS(1)
}

// Server reports whether the command line args (without the program's
// name) run a long-lived server subcommand: those keep every processor.
func Server(args []string) bool { return slices.ContainsFunc(args, isServerCommand) }

func isServerCommand(arg string) bool {
	switch arg {
	case "serve", "session-host", "mux-master", "sftp-server":
		return true
	}
	return false
}

// Restore gives the process back the processors the runtime chose, for a
// command that serves or fans out (agents, session hosts, many targets at
// once). A no-op when GOMAXPROCS was set, or called twice.
func Restore() {
	if procs > 1 && runtime.GOMAXPROCS(0) == 1 {
		runtime.GOMAXPROCS(procs)
	}
}

// Restored reports whether the process runs on the processors the runtime
// chose (for tests).
func Restored() bool { return procs == 0 || runtime.GOMAXPROCS(0) == procs }
