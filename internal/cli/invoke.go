package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

func invokeCmd(env *Env, g *globals) *cobra.Command {
	var throttle int
	var jsonOut, disconnected, noStdin bool
	var reconnect string
	cmd := &cobra.Command{
		Use:   "invoke [--throttle N] [--json] [--disconnected] TARGETS COMMAND...",
		Short: "Run a command on hosts or in sessions (Invoke-Command)",
		Long: `invoke runs COMMAND (the remaining arguments joined by spaces, as ssh does)
on every target, at most --throttle at once. A session address runs it in
that session's persistent shell; a bare host runs it in a temporary session
closed afterwards.

One target: stdout and stderr pass through unchanged, stdin is forwarded, and
the exit status is the command's. Several targets: each output line is
prefixed "ADDRESS: ", stdin is not forwarded, and the exit status is the
largest among the targets; a target that cannot be reached is reported on
stderr and counts as 255.

--json prints one JSON object per line: {"target","stream","data"} for each
output line (data_base64 instead of data when the line is not UTF-8), and a
final {"target","exit_code","error","duration_ms"} per target.

If the connection breaks, invoke reconnects by itself for up to
--reconnect-timeout and resumes the output exactly where it stopped.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) >= 2 && args[1] == "--" {
				args = append(args[:1], args[2:]...) // a command that starts with "-"
			} else if len(args) >= 2 && isOwnFlag(cmd, args[1]) {
				return usageError(cmd, "%s is an option of tether invoke, and options go before the targets: tether invoke %s %s ... (use -- before a remote command that starts with '-')", args[1], args[1], args[0])
			}
			if len(args) < 2 {
				return usageError(cmd, "no command given for %s", args[0])
			}
			targets, err := cliParseTargets(args[0])
			if err != nil {
				return err
			}
			rt, err := parseReconnect(reconnect)
			if err != nil {
				return err
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			command := strings.Join(args[1:], " ")
			req := wire.Request{Command: command, Detach: disconnected}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			signals := interrupts(env, cancel)
			for i, t := range targets {
				targets[i] = s.display(t)
			}
			f := &client.FanOut{
				Dialer: s.dialer, Throttle: throttle, JSON: jsonOut,
				Stdout: env.Stdout, Stderr: env.Stderr, Notify: env.Stderr,
				ReconnectTimeout: rt,
			}
			if !noStdin && !disconnected && len(targets) == 1 {
				f.Stdin = env.Stdin
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
			results := f.Invoke(ctx, targets, req, signals)
			worst := 0
			for _, r := range results {
				if r.Err != nil && !jsonOut {
					fmt.Fprintf(env.Stderr, "tether: %v\n", describeErr(r.Target, r.Err))
				}
				if r.Result.Dropped > 0 && !jsonOut {
					fmt.Fprintf(env.Stderr, "tether: %s: %d bytes of output were dropped while disconnected (OutputBufferingMode drop)\n", r.Target, r.Result.Dropped)
				}
				worst = max(worst, r.ExitCode)
			}
			if worst != 0 {
				return exitError{worst}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&throttle, "throttle", 32, "how many targets run at once")
	f.BoolVar(&jsonOut, "json", false, "one JSON object per output line and per target result")
	f.BoolVar(&disconnected, "disconnected", false, "start the command and disconnect at once; print the session addresses")
	f.BoolVarP(&noStdin, "no-stdin", "n", false, "do not forward stdin (like ssh -n)")
	f.StringVar(&reconnect, "reconnect-timeout", "4m", "how long to keep trying to get back after the connection breaks (0 to give up at once)")
	return cmd
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
