package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/fold"
	"github.com/tether-sh/tether/internal/shquote"
	"github.com/tether-sh/tether/internal/wire"
)

// maxStdinSpool bounds the stdin that invoke spools to send to several
// targets: it is held in memory once and sent to each.
const maxStdinSpool = 64 << 20

// oneStreamAfter is how long a one-target invoke runs before the process
// is tuned for moving one stream (Env.OneStream): bulk transfers run far
// longer, most commands are over well before.
var oneStreamAfter = 20 * time.Millisecond

// maxScriptFile bounds a --file script (it travels as the command text).
const maxScriptFile = 16 << 20

func invokeCmd(env *Env, g *globals) *cobra.Command {
	var tf targetFlags
	var jsonOut, disconnected, noStdin, foldOut bool
	var reconnect, scriptFile string
	cmd := &cobra.Command{
		Use:   "invoke [--throttle N] [--json] [--fold] [--disconnected] TARGETS COMMAND...\n  tether invoke --file SCRIPT TARGETS [ARGS...]",
		Short: "Run a command on hosts or in sessions (Invoke-Command)",
		Long: `invoke runs COMMAND (the remaining arguments joined by spaces, as ssh does)
on every target, at most --throttle at once. A session address runs it in
that session's persistent shell; a bare host runs it in a temporary session
closed afterwards. TARGETS is a target expression (web[01-20]/deploy,
@web, a!b; see tether hosts); with -f FILE the targets come from the file
and every argument is the command.

One target: stdout and stderr pass through unchanged, stdin is forwarded
(but for /dev/null, which the command gets as it is, as with -n), and the
exit status is the command's. Several targets: each output line is
prefixed "ADDRESS: ", and the exit status is the largest among the targets;
a target that cannot be reached is reported on stderr and counts as 255.
When stdin is not a terminal it is read once (at most 64 MiB) and sent to
every target; -n sends none.

--fold (-b, as clush) buffers each target's output and prints each distinct
output once at the end, under the folded list of the targets that produced
it (web[01-03,07]/deploy (4)), largest group first, with its exit status.

With several targets, a summary ends the run on stderr when any target
failed or the output is a terminal: how many succeeded, which failed and
how (folded), and the time.

--file SCRIPT runs the local script SCRIPT in each target's session (in a
subshell of the session's shell, so its variables and exit stay there),
with $1, $2, … set to ARGS exactly as given.

--json prints one JSON object per line: {"target","stream","data"} for each
output line (data_base64 instead of data when the line is not UTF-8), a
{"target","exit_code","error","duration_ms"} per target, and with several
targets a final {"summary":{"total","succeeded","failed","failures","elapsed_ms"}}.

If the connection breaks, invoke reconnects by itself for up to
--reconnect-timeout and resumes the output exactly where it stopped.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var exprs []string
			if tf.hostsFile == "" {
				if len(args) == 0 {
					return usageError(cmd, "no targets given")
				}
				exprs, args = args[:1], args[1:]
			}
			if len(args) >= 1 && args[0] == "--" {
				args = args[1:] // a command that starts with "-"
			} else if len(args) >= 1 && isOwnFlag(cmd, args[0]) {
				return usageError(cmd, "%s is an option of tether invoke, and options go before the targets: tether invoke %s %s ... (use -- before a remote command that starts with '-')", args[0], args[0], strings.Join(exprs, " "))
			}
			if foldOut && jsonOut {
				return usageError(cmd, "--fold and --json do not go together: --json output is already one record per line")
			}
			var command string
			if scriptFile != "" {
				c, err := scriptCommand(scriptFile, args)
				if err != nil {
					return err
				}
				command = c
			} else {
				if len(args) == 0 {
					return usageError(cmd, "no command given for %s", strings.Join(exprs, " "))
				}
				command = strings.Join(args, " ")
			}
			targets, err := tf.resolve(cmd, env, exprs, anyAddr)
			if err != nil {
				return err
			}
			if len(targets) > 1 {
				AllProcessors() // fan-out serves many connections at once
			}
			if len(targets) == 1 && env.OneStream != nil {
				// Tuned once the run proves long: resizing the scheduler
				// stops the world and hands the dropped processor's
				// cached spans back, which faulted in ~75 fresh pages —
				// an eighth of a fresh invoke's page faults (#18).
				t := time.AfterFunc(oneStreamAfter, env.OneStream)
				defer t.Stop()
			}
			rt, err := parseReconnect(reconnect)
			if err != nil {
				return err
			}
			var spooled []byte
			if !noStdin && !disconnected && len(targets) > 1 && env.Stdin != nil && !isTerminal(env.Stdin) {
				if spooled, err = spoolStdin(env.Stdin); err != nil {
					return err
				}
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			req := wire.Request{Command: command, Detach: disconnected}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			signals := interrupts(env, cancel)
			for i, t := range targets {
				targets[i] = s.display(t)
			}
			f := &client.FanOut{
				Dialer: s.dialer, Throttle: tf.throttle, JSON: jsonOut, Fold: foldOut,
				Stdout: env.Stdout, Stderr: env.Stderr, Notify: env.Stderr,
				ReconnectTimeout: rt,
			}
			if !noStdin && !disconnected && len(targets) == 1 {
				f.Stdin = forwardedStdin(env.Stdin)
			}
			if len(spooled) > 0 {
				f.StdinData = spooled
			}
			if isTerminal(env.Stderr) && len(targets) > 1 && !jsonOut {
				f.Progress = env.Stderr
			}
			if disconnected {
				f.OnStart = func(t client.Target, session string, temporary bool) {
					addr := t.WithSession(session)
					s.registry.Add(s.full(addr))
					if !jsonOut {
						fmt.Fprintln(env.Stdout, addr.String())
					}
				}
				// --disconnected on a bare host keeps a named session.
				req.Temporary = false
			}
			start := time.Now()
			results := f.Invoke(ctx, targets, req, signals)
			elapsed := time.Since(start)
			worst := 0
			folded := make([]fold.Result, len(results))
			for i, r := range results {
				folded[i] = fold.Result{Target: r.Target.String(), Stdout: r.Stdout, Stderr: r.Stderr, ExitStatus: r.ExitCode, Err: r.Err}
				if r.Err != nil && !jsonOut && !foldOut {
					fmt.Fprintf(env.Stderr, "tether: %v\n", describeErr(r.Target, r.Err))
				}
				if r.Result.Dropped > 0 && !jsonOut {
					fmt.Fprintf(env.Stderr, "tether: %s: %d bytes of output were dropped while disconnected (OutputBufferingMode drop)\n", r.Target, r.Result.Dropped)
				}
				worst = max(worst, r.ExitCode)
			}
			if foldOut {
				if err := fold.Write(env.Stdout, fold.Groups(folded)); err != nil {
					return err
				}
			}
			if len(targets) > 1 {
				sum := fold.Summarize(folded, elapsed)
				switch {
				case jsonOut:
					sum.WriteJSON(env.Stdout)
				case sum.Failed > 0 || isTerminal(env.Stdout) || isTerminal(env.Stderr):
					fmt.Fprint(env.Stderr, sum.Text())
				}
			}
			if worst != 0 {
				return exitError{worst}
			}
			return nil
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	f := cmd.Flags()
	f.BoolVar(&jsonOut, "json", false, "one JSON object per output line and per target result")
	f.BoolVarP(&foldOut, "fold", "b", false, "buffer the output and print each distinct output once, under its folded targets (as dshbak -c, clush -b)")
	f.StringVar(&scriptFile, "file", "", "run this local script in each target's session; the arguments after TARGETS are its $1, $2, …")
	f.BoolVar(&disconnected, "disconnected", false, "start the command and disconnect at once; print the session addresses")
	f.BoolVarP(&noStdin, "no-stdin", "n", false, "do not forward stdin (like ssh -n)")
	f.StringVar(&reconnect, "reconnect-timeout", "4m", "how long to keep trying to get back after the connection breaks (0 to give up at once)")
	return cmd
}

// spoolStdin reads stdin once for several targets, at most maxStdinSpool.
func spoolStdin(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxStdinSpool+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin to send to every target: %w", err)
	}
	if len(b) > maxStdinSpool {
		return nil, fmt.Errorf("stdin is more than %d MiB, the most invoke sends to several targets (it is held in memory once); copy the file to the hosts first, or use -n", maxStdinSpool>>20)
	}
	return b, nil
}

// scriptCommand is the command text that runs the local script path with
// args as its $1, $2, …: the script, unchanged, inside a subshell of the
// session's shell, after a set -- of the quoted arguments. The subshell
// keeps the script's exit and variables from ending or changing the
// session, as a script run by a shell would.
func scriptCommand(path string, args []string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--file: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxScriptFile+1))
	if err != nil {
		return "", fmt.Errorf("--file %s: %w", path, err)
	}
	if len(b) > maxScriptFile {
		return "", fmt.Errorf("--file %s: the script is more than %d MiB", path, maxScriptFile>>20)
	}
	// Quoted for the session's shell (shquote.Bash), not /bin/sh: it reads
	// only UTF-8 and drops a CR before a newline even in single quotes.
	set := "set --"
	for _, a := range args {
		set += " " + shquote.Bash(a)
	}
	return "(\n" + set + "\n" + string(b) + "\n)", nil
}

// isOwnFlag reports whether arg is one of cmd's flags (its own or the global
// ones), as given after the targets by mistake: flag parsing stops at the
// first positional argument, as ssh's does.
func isOwnFlag(cmd *cobra.Command, arg string) bool {
	name, ok := strings.CutPrefix(arg, "--")
	if ok {
		name, _, _ = strings.Cut(name, "=")
		return name != "" && cmd.Flags().Lookup(name) != nil
	}
	if len(arg) >= 2 && arg[0] == '-' {
		return cmd.Flags().ShorthandLookup(arg[1:2]) != nil
	}
	return false
}

// ranCommand is the name of the subcommand this process runs ("enter",
// "invoke"), for hints that say what to type next; Run sets it.
var ranCommand atomic.Pointer[string]

var forceHint = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`; use (tether [a-z-]+ )?--force to take it over$`)
})

// busyHint rewrites the host's "use ... --force to take it over" for the
// command that was refused: enter, connect and receive take --force
// themselves; anything else takes the session over with connect first.
func busyHint(msg string, cmd *string, t client.Target) string {
	if cmd == nil || !forceHint().MatchString(msg) {
		return msg
	}
	hint := fmt.Sprintf("; take it over with tether connect --force %s, then run tether %s again", t, *cmd)
	switch *cmd {
	case "enter", "connect", "receive":
		hint = fmt.Sprintf("; use tether %s --force %s to take it over", *cmd, t)
	}
	return forceHint().ReplaceAllLiteralString(msg, hint)
}

func parseReconnect(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad --reconnect-timeout %q: use a Go duration like 30s or 4m", s)
	}
	if d == 0 {
		return -1, nil
	}
	return d, nil
}

// describeErr prefixes an error with its target unless it already names it.
// A Busy refusal's hint names the command the user ran.
func describeErr(t client.Target, err error) string {
	msg := err.Error()
	if errors.Is(err, client.ErrBusy) {
		msg = busyHint(msg, ranCommand.Load(), t)
	}
	if strings.HasPrefix(msg, t.HostString()+":") || strings.HasPrefix(msg, t.String()+":") {
		return msg
	}
	return t.String() + ": " + msg
}

// interrupts turns Ctrl-C into INT signals for the remote commands. Three
// Ctrl-C within two seconds give up waiting (the commands may still run).
func interrupts(env *Env, giveUp func()) <-chan string {
	out := make(chan string, 8)
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT)
	go func() {
		var recent []time.Time
		for range sig {
			now := time.Now()
			recent = append(recent, now)
			for len(recent) > 0 && now.Sub(recent[0]) > 2*time.Second {
				recent = recent[1:]
			}
			if len(recent) >= 3 {
				fmt.Fprintln(env.Stderr, "tether: giving up waiting; the command may still be running in its session")
				giveUp()
				return
			}
			select {
			case out <- "INT":
			default:
			}
		}
	}()
	return out
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// forwardedStdin is the stdin a one-target run forwards: none when it is
// /dev/null (cron jobs, scripts, `</dev/null`), which the command gets as
// its stdin anyway, as with -n. Forwarding it would cost the run a stdin
// pipe, its copier and an EOF relayed through every process (#18).
func forwardedStdin(r io.Reader) io.Reader {
	if f, ok := r.(*os.File); ok && isDevNull(f) {
		return nil
	}
	return r
}

// isDevNull reports whether f is the null device.
func isDevNull(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err == nil && os.SameFile(fi, null)
}

// oneProcessor runs the Go scheduler on one processor (GOMAXPROCS=1, as
// OpenSSH's client is one thread) for an invoke of one target, unless
// GOMAXPROCS is set. Its goroutines (the SSH reader, the channel's
// consumer, the output writer) hand each 32 KiB packet on to the next; with
// a second processor idle, every hand-off woke a thread on it, and bulk
// output cost the CLI 80 context switches and 1.3–1.8 CPU-s per GiB
// against 25–30 and 1.1–1.2 on one (#18). Fan-out keeps every processor:
// it has hundreds of connections to serve at once.
func oneProcessor() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
