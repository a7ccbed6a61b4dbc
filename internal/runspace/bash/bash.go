// Package bash implements runspace.Shell with the host's real bash: one
// long-lived interactive bash process per session, fed one wrapper line per
// command on a control pipe, so that every bash feature (fds, traps, jobs,
// coproc, read -t, printf -v, declare -i, ...) works because it is bash.
//
// Each command's text is written to a file in Options.StateDir and sourced
// at top level with the command's own stdin/stdout/stderr (pipes the Shell
// copies, /dev/null, or enter's PTY opened by path); its exit status comes
// from a private pipe (fd 63), never from EOF. After every command bash
// snapshots its state with builtins only; when bash ends (`exit N`, a
// `set -e` failure, SIGKILL, OOM) the Shell starts a new bash and restores
// the last state. docs/shell-differences.md lists what differs from bash.
package bash

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/shquote"
)

// Options configures a bash [Shell].
type Options struct {
	Dir      string   // initial cwd (default $HOME from Env, else /)
	Env      []string // initial environment (KEY=VALUE), nil = os.Environ()
	StateDir string   // private dir (0700, the session user's) for the command file and state snapshots (memfds, see memfile.go)
	Bash     string   // path of bash; "" = exec.LookPath("bash")
	// NoProfile skips the login files (/etc/profile, ~/.bash_profile...).
	NoProfile bool
	// ProfileTimeout bounds the login files (default 10s): then they are
	// interrupted, and bash is restarted without them if that is not enough.
	ProfileTimeout time.Duration
	// KillGrace: after Interrupt, programs that ignore SIGINT are killed
	// with SIGKILL after this (default 2s). bash itself never is.
	KillGrace time.Duration
	// BeforeStart is called for the bash process itself before every
	// (re)start (cgroup, credentials); every command runs in that bash.
	BeforeStart func(*exec.Cmd)
	// AfterStart is called with bash's pid after every (re)start; an error
	// kills that bash and fails New or the command that needed it.
	AfterStart func(pid int) error
	// LateOutput receives what a background job writes to a command's
	// stdout (stream 1) or stderr (2) after that command ended (its Run
	// returned). nil discards it.
	LateOutput func(stream int, p []byte)
	Log        *slog.Logger
}

// Errors callers act on.
var (
	// ErrClosed: the Shell was closed.
	ErrClosed = errors.New("bash: shell closed")
	// ErrBusy: Run was called while another Run was running.
	ErrBusy = errors.New("bash: Run called concurrently")
)

// Shell is one long-lived bash. Run is not safe for concurrent use (it
// returns ErrBusy); the other methods are safe from any goroutine.
type Shell struct {
	opts Options

	runMu sync.Mutex // held by Run

	sf *stateFiles // the command file and the snapshots (memfile.go)

	mu   sync.Mutex // guards the fields below
	p    *proc
	seq  int
	last int // status of the last command, $? of the next
	// The last report that came with a snapshot, and the last command
	// since whose state has not changed (stateless commands).
	snapSeq, sameUntil int
	notices            []string
	cur                *running
	closed             bool
}

var _ runspace.Shell = (*Shell)(nil)

// Available reports whether path (or bash from PATH when "") is a bash of
// version 4 or newer that runs.
func Available(path string) bool {
	if path == "" {
		p, err := exec.LookPath("bash")
		if err != nil {
			return false
		}
		path = p
	}
	out, err := exec.Command(path, "--noprofile", "--norc", "-c", `echo "${BASH_VERSINFO[0]}"`).Output()
	if err != nil {
		return false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(out)))
	return err == nil && v >= 4
}

// New starts bash and, unless opts.NoProfile, runs the login files,
// bounded by opts.ProfileTimeout; their errors or a timeout come out once
// through Notices.
func New(ctx context.Context, opts Options) (*Shell, error) {
	if opts.StateDir == "" {
		return nil, errors.New("bash: Options.StateDir is empty: give the shell a private directory for its command files")
	}
	if fi, err := os.Stat(opts.StateDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("bash: state directory %s: not a directory (%v)", opts.StateDir, err)
	}
	if opts.Bash == "" {
		p, err := exec.LookPath("bash")
		if err != nil {
			return nil, fmt.Errorf("bash: no bash in PATH: %w", err)
		}
		opts.Bash = p
	}
	if opts.ProfileTimeout <= 0 {
		opts.ProfileTimeout = 10 * time.Second
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = 2 * time.Second
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Dir == "" {
		opts.Dir = defaultDir(opts.Env)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	sf, err := newStateFiles(opts.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Shell{opts: opts, sf: sf}
	s.mu.Lock()
	err = s.startLocked(ctx)
	s.mu.Unlock()
	if err != nil {
		sf.close()
		return nil, err
	}
	if !opts.NoProfile {
		s.runProfile(ctx)
	}
	return s, nil
}

func defaultDir(env []string) string {
	home := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = v
		}
	}
	if fi, err := os.Stat(home); home != "" && err == nil && fi.IsDir() {
		return home
	}
	return "/"
}

// runProfile sources the login files as a command whose stdout is dropped
// and whose stderr becomes a notice.
func (s *Shell) runProfile(ctx context.Context) {
	var errb limitedBuffer
	pctx, cancel := context.WithTimeout(ctx, s.opts.ProfileTimeout)
	defer cancel()
	code, err := s.run(pctx, profileScript, runspace.Streams{Stderr: &errb}, true)
	msg := strings.TrimSpace(errb.String())
	switch {
	case err != nil:
		s.notice(fmt.Sprintf("bash: the login profile failed: %v", err))
	case pctx.Err() != nil && ctx.Err() == nil:
		s.notice(fmt.Sprintf("bash: the login profile did not finish within %v and was interrupted (status %d); set ProfileTimeout or fix the profile", s.opts.ProfileTimeout, code))
	}
	if msg != "" {
		s.notice("bash: the login profile wrote to stderr:\n" + msg)
	}
}

func (s *Shell) notice(m string) {
	s.mu.Lock()
	s.notices = append(s.notices, m)
	s.mu.Unlock()
	s.opts.Log.Info("bash notice", "msg", m)
}

// Kind is [runspace.KindBash].
func (s *Shell) Kind() string { return runspace.KindBash }

// Pgid is bash's process group, which holds bash and the programs it runs
// in the foreground (0 when no bash runs). A terminal the commands run on
// gives it the foreground, so that its programs may read it and Ctrl-C
// typed there reaches bash and them, as in a terminal of bash's own.
func (s *Shell) Pgid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0
	}
	return s.p.pid
}

// Notices returns, once, what happened outside any command's output.
func (s *Shell) Notices() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := strings.Join(s.notices, "\n")
	s.notices = nil
	return n
}

// Run runs one command in bash; see [runspace.Shell.Run].
func (s *Shell) Run(ctx context.Context, script string, st runspace.Streams) (int, error) {
	return s.run(ctx, script, st, false)
}

func (s *Shell) run(ctx context.Context, script string, st runspace.Streams, profile bool) (int, error) {
	if !s.runMu.TryLock() {
		return 1, ErrBusy
	}
	defer s.runMu.Unlock()
	if ctx.Err() != nil {
		// Interrupted before it began (the session host cancels the
		// context for a Ctrl-C that comes first): bash, idle, would
		// take the SIGINT for itself and then run the line.
		return 128 + int(syscall.SIGINT), nil
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 1, ErrClosed
	}
	if !s.p.alive() {
		if err := s.recoverLocked(ctx, 0, false); err != nil {
			s.mu.Unlock()
			return 1, err
		}
	}
	p := s.p
	s.seq++
	seq, last := s.seq, s.last
	s.mu.Unlock()

	// A stateless command is plain words: the line holds it as it is,
	// without the command file.
	name := stateless(script)
	if name == "" {
		if err := s.sf.write("cmd", []byte(script)); err != nil {
			return 1, fmt.Errorf("bash: the command file: %w", err)
		}
	}
	ios, err := s.openStreams(seq, st)
	if err != nil {
		return 1, err
	}
	// "O SEQ" (only with a stdin pipe) tells the stdin copier that bash
	// holds the pipe open, so that it may drop its own read end.
	line := commandLine(seq, last, ios, name, script, s.sf.path("cmd"))
	p.mu.Lock()
	p.onOpen = func(n int) {
		if n == seq && ios.stdin != nil {
			ios.stdin.opened()
		}
	}
	p.mu.Unlock()
	c := &running{seq: seq, p: p, grace: s.opts.KillGrace, done: make(chan struct{})}
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, c.interrupt)

	var rep report
	died := false
	if _, err := io.WriteString(p.ctl, line); err != nil {
		died = true
	} else {
		rep, died = p.waitReport(seq)
	}
	status := rep.status
	stop()
	c.finish()
	ios.finish(s.opts.LateOutput)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = nil
	if died {
		<-p.exited
		var err error
		status, err = s.afterDeathLocked(ctx, seq, profile)
		if err != nil {
			return status, err
		}
	}
	if !died {
		if !rep.kept {
			s.snapSeq = seq
		}
		s.sameUntil = seq
	}
	s.last = status
	return status, nil
}

// commandLine is the line bash reads for one command (script.go): the
// command file sourced, or for a stateless command (name) its words.
func commandLine(seq, last int, ios *cmdStreams, name, script, cmdFile string) string {
	run := ". " + shquote.Bash(cmdFile)
	if name == "" {
		name = "-"
	} else {
		run = strings.TrimSpace(script)
	}
	// $? is 0 as a line starts (the last line ended with __tether_done).
	ret := ""
	if last != 0 {
		ret = fmt.Sprintf("__tether_ret %d && :; ", last)
	}
	open := ""
	if ios.stdin != nil {
		open = fmt.Sprintf("builtin printf 'O %d\\n' >&63; ", seq)
	}
	return fmt.Sprintf("__tether_s=%d __tether_p=%s __tether_O=%s __tether_E=%s; { %s%s{ %s; } 63>&-; } <%s >\"$__tether_O\" 2>\"$__tether_E\"; __tether_done\n",
		seq, shquote.Bash(name), shquote.Bash(ios.out), shquote.Bash(ios.err), open, ret, run, shquote.Bash(ios.in))
}

// stateless returns the command's name when script is one simple command
// that cannot change the shell's state if its name is a program (or one of
// a few builtins that change nothing): plain words only, no expansion but
// globs, no assignment, redirection, list or pipeline. bash still checks
// that the name is no function or alias (script.go). "" otherwise. After
// such a command the last snapshot still holds the state, and taking one
// (declare -p, declare -f, ...: about half of bash's work for `true`) is
// skipped.
func stateless(script string) string {
	t := strings.TrimSpace(script)
	if t == "" || strings.ContainsRune(t, '\n') {
		return ""
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" \t_./:,+=@%*?[]-", r)) {
			return ""
		}
	}
	name := strings.Fields(t)[0]
	switch {
	case name == "[":
		return name
	case strings.ContainsAny(name, "=*?[]") || strings.ContainsRune("-%+", rune(name[0])):
		// An assignment, a glob, an option, a job (%1 is fg).
		return ""
	case bashBuiltins()[name] && !pureBuiltins[name]:
		return ""
	}
	return name
}

// bashBuiltins are bash's builtins and reserved words (5.x): a stateless
// command's name is none of them, but for pureBuiltins. Built on first use:
// every client process links this package, only session hosts use it.
var bashBuiltins = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`. : [ alias bg bind break builtin caller cd command compgen complete
		compopt continue declare dirs disown echo enable eval exec exit export false fc fg getopts hash
		help history jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly
		return set shift shopt source suspend test times trap true type typeset ulimit umask unalias
		unset wait ! [[ ]] case coproc do done elif else esac fi for function if in select then time
		until while { }`) {
		m[n] = true
	}
	return m
})

// pureBuiltins change no state with any arguments.
var pureBuiltins = map[string]bool{"true": true, "false": true, ":": true, "echo": true, "test": true, "[": true, "pwd": true}

// afterDeathLocked handles bash's end during command seq: the status the
// command gets, and a new bash with the state at that end (from the EXIT
// trap's snapshot) or, if bash was killed, of the last completed command.
func (s *Shell) afterDeathLocked(ctx context.Context, seq int, profile bool) (int, error) {
	ps := s.p.state
	status := 1
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = 128 + int(ws.Signal())
		} else {
			status = ps.ExitCode()
		}
	}
	if dump, dseq, dst, ok := s.readSnapshot("exit"); ok && dseq == seq {
		_ = s.sf.write("exit", nil)
		return dst, s.restartLocked(ctx, dump)
	}
	why := "died"
	if ps != nil {
		why = "ended (" + ps.String() + ")"
	}
	if profile {
		s.notices = append(s.notices, fmt.Sprintf("bash: the shell %s while running the login profile; restarted without it", why))
	}
	return status, s.recoverLocked(ctx, seq, !profile)
}

// recoverLocked restarts a bash that died outside a clean `exit` with the
// last completed command's snapshot, and says so once.
func (s *Shell) recoverLocked(ctx context.Context, seq int, say bool) error {
	dump, dseq, _, ok := s.latestSnapshot()
	if ok && dseq == s.snapSeq {
		// The commands after it were stateless.
		dseq = s.sameUntil
	}
	if say || seq == 0 {
		pid := 0
		if s.p != nil {
			pid = s.p.pid
		}
		what := "bash"
		if s.p != nil && s.p.state != nil {
			what = fmt.Sprintf("bash (pid %d) ended: %s;", pid, s.p.state.String())
		} else {
			what = fmt.Sprintf("bash (pid %d) ended;", pid)
		}
		if ok {
			s.notices = append(s.notices, fmt.Sprintf("%s the session restarted it with the state after command %d (open files, running jobs and $! are lost)", what, dseq))
		} else {
			s.notices = append(s.notices, what+" the session restarted it with a fresh state")
		}
	}
	if !ok {
		dump = nil
	}
	return s.restartLocked(ctx, dump)
}

// latestSnapshot is the complete snapshot of the highest command number.
func (s *Shell) latestSnapshot() ([]byte, int, int, bool) {
	var best []byte
	bseq, bst, found := -1, 0, false
	for _, n := range []string{"snap0", "snap1"} {
		if d, q, st, ok := s.readSnapshot(n); ok && q > bseq {
			best, bseq, bst, found = d, q, st, true
		}
	}
	return best, bseq, bst, found
}

// readSnapshot reads a state file and its trailer "# tether-end SEQ STATUS";
// a file without the trailer (bash died while writing it) is not ok.
func (s *Shell) readSnapshot(name string) (dump []byte, seq, status int, ok bool) {
	b, err := s.sf.read(name)
	if err != nil || len(b) == 0 {
		return nil, 0, 0, false
	}
	b = bytes.TrimRight(b, "\n")
	i := bytes.LastIndexByte(b, '\n')
	trailer := b[i+1:]
	f := strings.Fields(string(trailer))
	if len(f) != 4 || f[0] != "#" || f[1] != "tether-end" {
		return nil, 0, 0, false
	}
	seq, e1 := strconv.Atoi(f[2])
	status, e2 := strconv.Atoi(f[3])
	if e1 != nil || e2 != nil {
		return nil, 0, 0, false
	}
	return b[:i+1], seq, status, true
}

// restartLocked starts a new bash and restores dump (nil: none).
func (s *Shell) restartLocked(ctx context.Context, dump []byte) error {
	// The options last (set -e among them would end a restore that fails),
	// read before the new bash's first snapshot overwrites them.
	if opts, _, _, ok := s.readSnapshot("opts"); ok && dump != nil {
		dump = append(append([]byte(nil), dump...), opts...)
	}
	if err := s.startLocked(ctx); err != nil {
		return err
	}
	if dump == nil {
		return nil
	}
	if err := s.sf.write("restore", restoreScript(dump, s.opts.Env)); err != nil {
		return fmt.Errorf("bash: the restore file: %w", err)
	}
	s.seq++
	line := fmt.Sprintf("__tether_s=%d; { . %s; } </dev/null >/dev/null 2>&1 63>&-; __tether_done\n", s.seq, shquote.Bash(s.sf.path("restore")))
	if _, err := io.WriteString(s.p.ctl, line); err != nil {
		return fmt.Errorf("bash: restore the state: %w", err)
	}
	if _, died := s.p.waitReport(s.seq); died {
		return errors.New("bash: the restarted bash died while restoring the state")
	}
	s.snapSeq, s.sameUntil = s.seq, s.seq
	return nil
}

// restoreScript is dump plus unsets of the initial environment's names the
// dump does not hold (the user unset them), and without the read-only and
// bash-internal variables, whose assignment fails or misleads.
func restoreScript(dump []byte, env []string) []byte {
	names := map[string]bool{}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(dump))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var kept bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		// "declare -FLAGS NAME[=VALUE]". bash's own variables never hold
		// a newline, so dropping just that line drops all of one.
		skip := false
		if rest, ok := strings.CutPrefix(line, "declare -"); ok {
			_, nv, _ := strings.Cut(rest, " ")
			name, _, _ := strings.Cut(nv, "=")
			names[name] = true
			skip = unrestorable[name]
		}
		if !skip {
			kept.WriteString(line)
			kept.WriteByte('\n')
		}
	}
	for _, kv := range env {
		n, _, _ := strings.Cut(kv, "=")
		if n != "" && !names[n] {
			fmt.Fprintf(&out, "builtin unset -v %s\n", shquote.Bash(n))
		}
	}
	out.Write(kept.Bytes())
	return out.Bytes()
}

// unrestorable are bash's own variables: read-only ones, and ones whose
// value belongs to the process that printed them.
var unrestorable = map[string]bool{
	"BASHOPTS": true, "BASHPID": true, "BASH_ARGC": true, "BASH_ARGV": true, "BASH_ARGV0": true,
	"BASH_COMMAND": true, "BASH_LINENO": true, "BASH_SOURCE": true, "BASH_SUBSHELL": true,
	"BASH_VERSINFO": true, "BASH_VERSION": true, "BASH_CMDS": true, "EUID": true, "FUNCNAME": true,
	"GROUPS": true, "HISTCMD": true, "LINENO": true, "PPID": true, "SHELLOPTS": true, "UID": true,
	"__tether_O": true, "__tether_E": true, "__tether_os": true,
	"PIPESTATUS": true, "EPOCHREALTIME": true, "EPOCHSECONDS": true, "SRANDOM": true, "RANDOM": true,
	"SHLVL": true, "PROMPT_COMMAND": true, "__tether_s": true, "__tether_st": true, "__tether_n": true,
	"__tether_F": true, "__tether_p": true, "_": true, "COMP_WORDBREAKS": true, "DIRSTACK": true, "BASH_EXECUTION_STRING": true,
}

// Interrupt is Ctrl-C; see [runspace.Shell.Interrupt].
func (s *Shell) Interrupt() {
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c != nil {
		c.interrupt()
	}
}

// Signal sends sig to the running command's programs (not bash, not
// background jobs). A no-op when idle.
func (s *Shell) Signal(sig syscall.Signal) {
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c != nil {
		for _, pid := range c.p.foreground() {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// Close ends bash and everything in its process group: SIGHUP (bash passes
// it to its jobs), then SIGKILL.
func (s *Shell) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	p := s.p
	s.mu.Unlock()
	if p != nil {
		_ = syscall.Kill(-p.pid, syscall.SIGHUP)
		select {
		case <-p.exited:
		case <-time.After(time.Second):
		}
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	}
	s.sf.close()
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 4096 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
