// Package runspace implements a persistent shell runspace: one long-lived
// mvdan.cc/sh/v3 interpreter whose variables, functions, aliases, working
// directory, exported environment and options persist between commands,
// exactly as if every command were typed into the same long-running shell.
//
// The session host owns one [Runspace] and runs one command (a full shell
// script) at a time with [Runspace.Run]. External programs of a command run
// in process groups of their own, so that [Runspace.Interrupt] and
// [Runspace.Signal] reach the whole pipeline and never the host process.
//
// Builtins that mvdan.cc/sh lacks and that administrators use daily (umask,
// declare -p/-f/-F without names) are provided on top of the interpreter; see
// docs/shell-differences.md for what still differs from bash.
package runspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/tether-sh/tether/internal/shellsyntax"
)

// Options configures a new [Runspace].
type Options struct {
	// Dir is the initial working directory (default: $HOME, or / if that
	// is unset or not a directory).
	Dir string
	// Env is the initial environment as KEY=VALUE pairs; nil means
	// os.Environ(). Every entry is exported to child processes.
	Env []string
	// Params are the positional parameters ($1...), usually none.
	Params []string
	// BeforeStart is called with each external command right before it is
	// started (after the runspace set its SysProcAttr), letting the caller
	// adjust it (e.g. credentials, a PTY's controlling terminal). May be nil.
	BeforeStart func(cmd *exec.Cmd)
	// AfterStart is called with each started external process' pid (e.g. to
	// move it into a cgroup). An error kills that process and fails the
	// command with that error on stderr. May be nil.
	AfterStart func(pid int) error
	// Start, if set, starts each external command: it is given the
	// command (after BeforeStart) and a function that starts it, which it
	// must call, e.g. on an OS thread that is inside the session's
	// cgroup so that the program is born there. It returns that
	// function's error. May be nil.
	Start func(cmd *exec.Cmd, start func() error) error
	// KillGrace is how long after an interrupt the runspace waits before
	// sending SIGKILL to the command's process groups (default 2s).
	KillGrace time.Duration
}

// Streams are the standard streams of one command. Any of them may be nil
// (stdin then reads as empty, output is discarded). An [*os.File] (a PTY, a
// pipe) is handed to child processes as is; any other reader or writer is
// connected through a pipe that the runspace copies.
//
// A Stdin that is not an *os.File is copied into a pipe by a goroutine that
// ends at EOF or when it next reads after the command finished; a reader
// that blocks forever (an interactive stream) should therefore be an
// *os.File.
type Streams struct {
	Stdin          io.Reader // nil: empty, as </dev/null
	Stdout, Stderr io.Writer
	// JobControl says the streams are a terminal whose foreground each
	// program gets as it starts (BeforeStart does that), so Ctrl-C sends
	// SIGINT to the program alone. As in an interactive bash, a program
	// killed by SIGINT then stops the rest of the command: the loop or
	// list it was part of is not run on.
	JobControl bool
}

// Runspace is a persistent shell: a single interpreter whose state survives
// between [Runspace.Run] calls. Run is not safe for concurrent use; the other
// methods are safe to call from any goroutine.
type Runspace struct {
	opts   Options
	runner *interp.Runner
	parser *syntax.Parser

	umaskMu sync.Mutex
	umask   int // the runspace's file mode creation mask

	mu      sync.Mutex // guards the fields below
	busy    bool
	current string
	dir     string
	job     *job
}

// New creates a runspace.
func New(opts Options) (*Runspace, error) {
	if opts.KillGrace <= 0 {
		opts.KillGrace = 2 * time.Second
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	dir := opts.Dir
	if dir == "" {
		dir = defaultDir(env)
	}
	r := &Runspace{
		opts:   opts,
		parser: syntax.NewParser(syntax.Variant(syntax.LangBash)),
		umask:  processUmask(),
	}
	runnerOpts := []interp.RunnerOption{
		interp.Env(expand.ListEnviron(env...)),
		interp.Dir(dir),
		interp.Interactive(true), // expand_aliases, like an interactive bash
		interp.StdIO(nil, io.Discard, io.Discard),
		interp.CallHandler(r.callHandler),
		interp.ExecHandlers(func(interp.ExecHandlerFunc) interp.ExecHandlerFunc { return r.execHandler }),
		interp.OpenHandler(r.openHandler),
	}
	if len(opts.Params) > 0 {
		runnerOpts = append(runnerOpts, interp.Params(append([]string{"--"}, opts.Params...)...))
	}
	runner, err := interp.New(runnerOpts...)
	if err != nil {
		return nil, fmt.Errorf("runspace: %w", err)
	}
	runner.Reset()
	r.runner = runner
	r.dir = runner.Dir
	return r, nil
}

func defaultDir(env []string) string {
	home := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = v
		}
	}
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if fi, err := os.Stat(home); home != "" && err == nil && fi.IsDir() {
		return home
	}
	return "/"
}

// Run parses and runs one command string, which may be a full shell script
// (several lines, functions, pipelines). It returns the exit status as bash
// would report $? at the end. A syntax error prints "tether: syntax error:
// LINE:COL: ..." to s.Stderr, runs nothing and returns 2. `exit N` ends only
// this command and returns N; the runspace stays usable with all its state.
// After [Runspace.Interrupt] it returns the status the command ended with,
// normally 130. err is only for internal failures.
//
// Run is not safe to call concurrently.
func (r *Runspace) Run(ctx context.Context, script string, s Streams) (exitCode int, err error) {
	j := newJob(ctx, r.opts.KillGrace)
	j.jobControl = s.JobControl
	r.mu.Lock()
	if r.busy {
		r.mu.Unlock()
		return 1, errors.New("runspace: Run called concurrently")
	}
	r.busy, r.current, r.job = true, script, j
	r.mu.Unlock()
	defer func() {
		j.finish()
		r.mu.Lock()
		r.busy, r.current, r.job = false, "", nil
		r.dir = r.runner.Dir
		r.mu.Unlock()
	}()

	file, perr := r.parser.Parse(strings.NewReader(script), "")
	stderr := s.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	if perr != nil {
		hint := ""
		if strings.Contains(perr.Error(), "invalid UTF-8") {
			hint = " (the session's shell reads commands as UTF-8: write other bytes as $'\\xNN')"
		}
		fmt.Fprintf(stderr, "tether: syntax error: %v%s\n", perr, hint)
		return 2, nil
	}
	rewriteDecls(file)

	stdio, err := newStdio(s)
	if err != nil {
		return 1, fmt.Errorf("runspace: %w", err)
	}
	defer stdio.close()
	if err := interp.StdIO(stdio.stdin, stdio.stdout, stdio.stderr)(r.runner); err != nil {
		return 1, fmt.Errorf("runspace: %w", err)
	}
	// Builtins write to the session's streams directly; do not keep
	// referencing them between commands.
	defer interp.StdIO(nil, io.Discard, io.Discard)(r.runner)
	stopAfter := context.AfterFunc(ctx, j.interrupt)
	defer stopAfter()

	code := 0
	for _, st := range file.Stmts {
		// Running statement by statement: Run on a whole *syntax.File
		// would fire the EXIT trap at the end of every command.
		rerr := r.runner.Run(j.ctx, st)
		var es interp.ExitStatus
		switch {
		case rerr == nil:
			code = 0
		case errors.As(rerr, &es):
			code = int(es)
		case j.ctx.Err() != nil:
			// The interpreter itself was stopped by an interrupt
			// (e.g. in a builtin loop).
			code = 128 + int(syscall.SIGINT)
		default:
			// A fatal interpreter error such as "set -u" tripping:
			// bash reports it and the command fails.
			fmt.Fprintf(stdio.stderr, "tether: %v\n", rerr)
			code = 1
		}
		r.mu.Lock()
		r.dir = r.runner.Dir
		r.mu.Unlock()
		if r.runner.Exited() || j.ctx.Err() != nil {
			break
		}
	}
	return j.interruptStatus(code), nil
}

// Interrupt is like Ctrl-C on the foreground job: it sends SIGINT to every
// process group of the running command, stops builtin loops too, and
// escalates to SIGKILL after KillGrace. It is a no-op when idle.
func (r *Runspace) Interrupt() {
	if j := r.currentJob(); j != nil {
		j.interrupt()
	}
}

// Signal forwards sig (e.g. SIGTSTP, SIGQUIT, SIGTERM, SIGWINCH) to the
// running command's process groups. It is a no-op when idle.
func (r *Runspace) Signal(sig syscall.Signal) {
	if j := r.currentJob(); j != nil {
		j.signal(sig)
	}
}

// Dir returns the current working directory (for a prompt, and tether cp's
// relative paths). While a command runs, it reflects the state after the
// last finished top-level statement. It never fails: the interpreter keeps
// its directory as a string.
func (r *Runspace) Dir() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dir, nil
}

// Busy reports whether a command is running.
func (r *Runspace) Busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.busy
}

// Current returns the running command's text, or "" when idle.
func (r *Runspace) Current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Pgids returns the process groups of the running command that still have
// members, or nil when idle.
func (r *Runspace) Pgids() []int {
	if j := r.currentJob(); j != nil {
		return j.pgids()
	}
	return nil
}

func (r *Runspace) currentJob() *job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.job
}

// IsComplete reports whether script is a complete input or needs more
// lines; see shellsyntax.IsComplete, which the client uses without this
// package.
func IsComplete(script string) (bool, error) { return shellsyntax.IsComplete(script) }
