package runspace

import (
	"context"
	"syscall"
)

// Shell is a session's runspace as the session host sees it: one
// long-lived shell whose state (variables, functions, aliases, cwd,
// options, traps, jobs) persists between commands. Two implement it: the
// builtin interpreter ([Runspace], mvdan.cc/sh, for hosts without bash) and
// the host's real bash (package runspace/bash). Adding another shell (a
// POSIX sh, zsh) means one more implementation; nothing above this
// interface knows which shell it drives.
type Shell interface {
	// Run runs one command (any text: several lines, heredocs, any bytes)
	// with its own streams and returns its exit status. `exit N`, a
	// failure under `set -e` and a `set -u` error end the command with
	// their status, never the session. err is only for internal failures
	// (the shell could not be reached or restarted).
	Run(ctx context.Context, script string, s Streams) (exitCode int, err error)
	// Interrupt is Ctrl-C: it stops the running command (programs and
	// builtin loops), which then returns 130; whatever ignores SIGINT is
	// killed after the grace period. A no-op when idle.
	Interrupt()
	// Signal forwards sig to the running command's programs. A no-op when
	// idle.
	Signal(sig syscall.Signal)
	// Dir is the shell's current directory now (after any cd), as an
	// absolute path: what tether cp resolves relative paths against.
	Dir() (string, error)
	// Kind names the shell: "builtin" or "bash".
	Kind() string
	// Notices returns, once, what the shell has to tell the user that no
	// command's output carried: a profile that failed or timed out, a
	// restart after the shell died. Empty when there is nothing new.
	Notices() string
	// Close ends the shell and everything it runs.
	Close() error
}

// Kinds of [Shell].
const (
	KindBuiltin = "builtin"
	KindBash    = "bash"
)

var _ Shell = (*Runspace)(nil)

// Kind is [KindBuiltin].
func (r *Runspace) Kind() string { return KindBuiltin }

// Notices: the builtin interpreter has none (it reads no profile and
// cannot die apart from its session host).
func (r *Runspace) Notices() string { return "" }

// Close interrupts a running command; the interpreter itself holds nothing
// that outlives the session host.
func (r *Runspace) Close() error {
	r.Interrupt()
	return nil
}
