package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/lineedit"
	"github.com/tether-sh/tether/internal/shellsyntax"
	"github.com/tether-sh/tether/internal/wire"
)

// DefaultPrompt is enter's prompt unless --prompt or TETHER_PROMPT say
// otherwise.
const DefaultPrompt = "[{target} {dir}]$ "

// enterOpts are enter's flags.
type enterOpts struct {
	prompt, reconnect string
	promptSet         bool // --prompt was given: $TETHER_PROMPT does not apply
	force             bool
}

func enterCmd(env *Env, g *globals) *cobra.Command {
	o := enterOpts{prompt: DefaultPrompt, reconnect: "4m"}
	cmd := &cobra.Command{
		Use:   "enter [--prompt FORMAT] [--force] TARGET",
		Short: "Work interactively in a session (Enter-PSSession)",
		Long: `enter opens an interactive shell on a session: each line you type (or each
complete multi-line construct, such as an if or for) runs in the session's
persistent shell, so variables, functions and the current directory are the
ones tether invoke sees, and the other way round.

TARGET is a session address (HOST/NAME), which stays open when you leave, or
a bare host, for a temporary session closed when you leave. Leave with exit
or Ctrl-D.

On a terminal, commands run on a remote pseudo-terminal: full-screen and
line-editing programs (vi, less, top, a python REPL) work, window size
changes are passed on, and Ctrl-C and Ctrl-Z go to the running program. At
the prompt, Ctrl-C clears the line; Up and Down walk the history, kept per
session in ~/.config/tether/history/.

The prompt is FORMAT with {user}, {host}, {session}, {target} (user@host or
user@host/session) and {dir} (the session's current directory) replaced;
default "` + DefaultPrompt + `", or $TETHER_PROMPT.

When stdin is not a terminal, enter reads commands from it and runs them one
by one, without a pseudo-terminal, and exits with the last one's status.

If the connection breaks, enter reconnects by itself for up to
--reconnect-timeout; a running command's output resumes where it stopped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("prompt") {
				o.promptSet = true
			}
			return runEnter(cmd.Context(), env, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prompt, "prompt", DefaultPrompt, "prompt format: {user} {host} {session} {target} {dir}")
	f.BoolVar(&o.force, "force", false, "take the session over from another client")
	f.StringVar(&o.reconnect, "reconnect-timeout", "4m", "how long to keep trying to get back after the connection breaks (0 to give up at once)")
	return cmd
}

// runEnter is tether enter TARGET: interactive on a terminal, else the
// commands read from stdin one by one.
func runEnter(ctx context.Context, env *Env, g *globals, o enterOpts, args []string) error {
	if len(args) != 1 {
		return errors.New("enter needs one TARGET")
	}
	t, err := client.ParseTarget(args[0])
	if err != nil {
		return err
	}
	rt, err := parseReconnect(o.reconnect)
	if err != nil {
		return err
	}
	prompt := o.prompt
	if !o.promptSet {
		if p := env.Getenv("TETHER_PROMPT"); p != "" {
			prompt = p
		}
	}
	s, err := g.setup(env)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e := &enterer{env: env, s: s, target: s.display(t), reconnect: rt, prompt: prompt, force: o.force}
	return e.main(ctx, cancel)
}

// enterer is one `tether enter`.
type enterer struct {
	env       *Env
	s         *session
	target    client.Target // the session's address, as shown
	temporary bool          // a session of our own, removed on leaving
	reconnect time.Duration
	prompt    string
	force     bool // take the session over from another client

	conn     *client.Conn
	hold     *client.Hold // this enter holds the session (takeHold)
	holdConn *client.Conn // the connection the hold is on
	gone     bool         // the session was found closed, or taken away
	last     int          // the last command's exit status
	dir      string       // the session's current directory
}

func (e *enterer) main(ctx context.Context, cancel func()) error {
	interactive := isTerminal(e.env.Stdin)
	if e.target.Session == "" {
		if err := e.openTemporary(ctx); err != nil {
			return fmt.Errorf("%s", describeErr(e.target, err))
		}
		defer e.leave(interactive)
	}
	// Holding the session first checks that it exists and that the host
	// answers: a first connection that fails is an error at once, and
	// only a session that exists is remembered. Reconnecting is for a
	// session enter has reached.
	if err := e.takeHold(ctx, e.force); err != nil {
		return fmt.Errorf("%s", describeErr(e.target, err))
	}
	if !e.temporary {
		e.s.registry.Add(e.s.full(e.target))
		defer e.leave(interactive)
	}

	var err error
	if interactive {
		err = e.interactive(ctx, cancel)
	} else {
		err = e.scripted(ctx, cancel)
	}
	if err != nil {
		return err
	}
	if e.last != 0 {
		return exitError{e.last}
	}
	return nil
}

// takeHold holds the session for this enter (client.Hold): between its
// commands other clients find it Busy.
func (e *enterer) takeHold(ctx context.Context, force bool) error {
	c, err := e.connection(ctx)
	if err != nil {
		return err
	}
	h, err := c.Hold(ctx, e.target.Session, e.s.dialer.Client, force)
	if err != nil {
		return err
	}
	e.hold, e.holdConn = h, c
	return nil
}

// ensureHold checks the hold before a command: one the host took away
// (another client took the session over) ends enter; one whose connection
// broke is taken again on c.
func (e *enterer) ensureHold(ctx context.Context, c *client.Conn) error {
	if e.hold != nil {
		lost, reason := e.hold.Lost()
		if !lost && e.holdConn == c {
			return nil
		}
		e.hold.Close()
		e.hold = nil
		if reason != "" {
			return fmt.Errorf("%w: %s", client.ErrDetached, reason)
		}
	}
	h, err := c.Hold(ctx, e.target.Session, e.s.dialer.Client, false)
	if err != nil {
		return err
	}
	e.hold, e.holdConn = h, c
	return nil
}

// openTemporary opens a session for this enter alone. It is an ordinary
// session (a temporary one would close after its first command) that
// leave removes.
func (e *enterer) openTemporary(ctx context.Context) error {
	c, err := e.connection(ctx)
	if err != nil {
		return err
	}
	resp, err := c.Call(ctx, wire.Request{Op: wire.OpNew, Client: e.s.dialer.Client})
	if err != nil {
		return fmt.Errorf("cannot open a session: %w", err)
	}
	e.target = e.target.WithSession(resp.Session.Name)
	e.temporary = true
	return nil
}

// leave closes a temporary session, or says how to come back.
func (e *enterer) leave(interactive bool) {
	defer func() {
		if e.conn != nil {
			e.conn.Close()
		}
	}()
	if e.hold != nil {
		e.hold.Close()
		e.hold = nil
	}
	if !e.temporary {
		if interactive && !e.gone {
			fmt.Fprintf(e.env.Stderr, "session %s is still open; come back with: tether enter %s\n", e.target, e.target)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := func() error {
		c, err := e.connection(ctx)
		if err != nil {
			return err
		}
		_, err = c.Call(ctx, wire.Request{Op: wire.OpRemove, Session: e.target.Session, Client: e.s.dialer.Client})
		if errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrClosed) {
			err = nil
		}
		return err
	}()
	switch {
	case err != nil:
		fmt.Fprintf(e.env.Stderr, "tether: cannot close temporary session %s: %v (tether remove %s)\n", e.target, err, e.target)
	case interactive:
		fmt.Fprintln(e.env.Stderr, "temporary session closed")
	}
}

// connection returns the SSH connection to the host, dialing again when
// the previous one is gone.
func (e *enterer) connection(ctx context.Context) (*client.Conn, error) {
	if e.conn != nil {
		select {
		case <-e.conn.Done():
			e.conn.Close()
			e.conn = nil
		default:
			return e.conn, nil
		}
	}
	c, err := e.s.dial(ctx, e.target)
	if err != nil {
		return nil, err
	}
	e.conn = c
	return c, nil
}

// run runs one command in the session. Dialer.Run resumes a command whose
// connection breaks; here a connection found broken before the command
// started is dialled again, for up to the reconnect timeout.
func (e *enterer) run(ctx context.Context, spec client.RunSpec) (client.Result, error) {
	spec.Target = e.target
	spec.ReconnectTimeout = e.reconnect
	start := time.Now()
	backoff := 50 * time.Millisecond
	told := false
	for {
		c, err := e.connection(ctx)
		if err == nil {
			err = e.ensureHold(ctx, c)
		}
		if err == nil {
			started := false
			onStart := spec.OnStart
			spec.OnStart = func(session string, temporary bool) {
				started = true
				if onStart != nil {
					onStart(session, temporary)
				}
			}
			var res client.Result
			res, err = e.s.dialer.Run(ctx, c, spec)
			spec.OnStart = onStart
			if err == nil || started || !errors.Is(err, client.ErrTransport) {
				if told && err == nil && spec.Notify != nil {
					fmt.Fprintf(spec.Notify, "tether: reconnected to %s\n", e.target.HostString())
				}
				e.noteGone(err)
				return res, err
			}
			c.Close()
			e.conn = nil
		} else if !errors.Is(err, client.ErrConnect) && !errors.Is(err, client.ErrTransport) {
			e.noteGone(err)
			return client.Result{}, err
		} else if e.conn != nil {
			e.conn.Close()
			e.conn = nil
		}
		if e.reconnect < 0 || time.Since(start) > e.reconnect || ctx.Err() != nil {
			return client.Result{}, err
		}
		if !told && spec.Notify != nil {
			fmt.Fprintf(spec.Notify, "tether: connection to %s lost (%v); reconnecting for up to %s\n", e.target.HostString(), err, e.reconnect)
			told = true
		}
		select {
		case <-ctx.Done():
			return client.Result{}, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// noteGone remembers that the session is gone or no longer ours, so that
// leaving does not say it is still open.
func (e *enterer) noteGone(err error) {
	if errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrClosed) || errors.Is(err, client.ErrDetached) {
		e.gone = true
	}
}

// fatal reports whether err means the session cannot be used any more.
func fatal(err error) bool {
	return errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrClosed) ||
		errors.Is(err, client.ErrDetached) || errors.Is(err, client.ErrHostKey) ||
		errors.Is(err, client.ErrAuth) || errors.Is(err, context.Canceled)
}

var exitRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*exit(\s+(\d+))?\s*;?\s*$`) })

// isExit reports whether script is a bare `exit [N]`, which leaves enter.
func (e *enterer) isExit(script string) (int, bool) {
	m := exitRE().FindStringSubmatch(strings.TrimSpace(script))
	if m == nil {
		return 0, false
	}
	if m[2] == "" {
		return e.last, true
	}
	n, _ := strconv.Atoi(m[2])
	return n & 255, true
}

// scripted runs the commands read from a stdin that is not a terminal.
func (e *enterer) scripted(ctx context.Context, cancel func()) error {
	signals := interrupts(e.env, cancel)
	br := bufio.NewReader(e.env.Stdin)
	var buf strings.Builder
	for {
		line, rerr := br.ReadString('\n')
		buf.WriteString(line)
		script := buf.String()
		eof := rerr != nil
		if script != "" && !strings.HasSuffix(script, "\n") {
			script += "\n"
		}
		complete := eof
		if !complete && script != "" {
			complete, _ = shellsyntax.IsComplete(script)
		}
		if complete && script != "" {
			buf.Reset()
			if code, ok := e.isExit(script); ok {
				e.last = code
				return nil
			}
			if strings.TrimSpace(script) != "" {
				res, err := e.run(ctx, client.RunSpec{
					Request: wire.Request{Command: script},
					Stdout:  e.env.Stdout, Stderr: e.env.Stderr, Notify: e.env.Stderr,
					Signals: signals,
				})
				if err != nil {
					fmt.Fprintf(e.env.Stderr, "tether: %s\n", describeErr(e.target, err))
					if fatal(err) {
						return exitError{255}
					}
					e.last = 255
				} else {
					e.report(res, e.env.Stderr)
					e.last = res.ExitCode
				}
			}
		}
		if eof {
			if rerr != io.EOF {
				return fmt.Errorf("reading commands: %w", rerr)
			}
			return nil
		}
	}
}

func (e *enterer) report(res client.Result, w io.Writer) {
	if res.Dropped > 0 {
		fmt.Fprintf(w, "tether: %s: %d bytes of output were dropped while disconnected (OutputBufferingMode drop)\n", e.target, res.Dropped)
	}
	if res.Message != "" {
		fmt.Fprintf(w, "tether: %s: %s\n", e.target, res.Message)
	}
}

// dirQuery prints the session's current directory and leaves $? as it
// was (eval expands $? before pwd runs); builtin skips user functions.
const dirQuery = `builtin eval "builtin pwd; (exit $?)"`

// queryDir asks the session for its current directory for the prompt. After
// a command of ours it sets $? to the status the host reported for it (the
// runspace's own $? after an interrupted builtin loop is 1, not 130).
func (e *enterer) queryDir(ctx context.Context, status int, known bool) error {
	var out bytes.Buffer
	query := dirQuery
	if known && status >= 0 && status <= 255 {
		query = fmt.Sprintf("builtin pwd; (exit %d)", status)
	}
	_, err := e.run(ctx, client.RunSpec{
		Request: wire.Request{Command: query},
		Stdout:  &out, Stderr: io.Discard, Notify: lineedit.CRLF{W: e.env.Stderr},
	})
	if err != nil {
		return err
	}
	if d := strings.TrimSpace(out.String()); d != "" {
		e.dir = d
	}
	return nil
}

func (e *enterer) promptText() string {
	user := e.target.User
	if user == "" {
		user = e.s.dialer.DefaultUser
	}
	h := e.target
	h.User, h.Session = "", ""
	host := h.HostString()
	target := user + "@" + host
	if !e.temporary {
		target += "/" + e.target.Session
	}
	return strings.NewReplacer(
		"{user}", user, "{host}", host, "{session}", e.target.Session,
		"{target}", target, "{dir}", e.dir,
	).Replace(e.prompt)
}

// interactive is the terminal loop: read a complete input with line
// editing, run it on a remote pseudo-terminal, show the prompt again.
func (e *enterer) interactive(ctx context.Context, cancel func()) error {
	// The first query checks that the session is usable before the
	// terminal goes raw.
	if err := e.queryDir(ctx, 0, false); err != nil {
		return fmt.Errorf("%s", describeErr(e.target, err))
	}
	stdin := e.env.Stdin.(*os.File)
	fd := int(stdin.Fd())
	saved, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("cannot put the terminal in raw mode: %w", err)
	}
	defer term.Restore(fd, saved)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		select {
		case <-hup:
			cancel()
		case <-ctx.Done():
		}
	}()

	in := lineedit.NewInput(stdin)
	ed := lineedit.NewEditor(in.Reader(), e.env.Stdout, e.historyPath())
	errw := lineedit.CRLF{W: e.env.Stderr}

	rows, cols := 24, 80
	var sizeMu sync.Mutex
	if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
		rows, cols = h, w
	}
	ed.SetSize(cols, rows)
	resize := make(chan [2]int, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
			}
			w, h, err := term.GetSize(fd)
			if err != nil || w <= 0 || h <= 0 {
				continue
			}
			sizeMu.Lock()
			rows, cols = h, w
			sizeMu.Unlock()
			ed.SetSize(w, h)
			select {
			case <-resize:
			default:
			}
			resize <- [2]int{h, w}
		}
	}()
	termName := e.env.Getenv("TERM")
	if termName == "" {
		termName = "xterm"
	}

	for {
		script, err := ed.ReadInput(e.promptText, func(s string) bool { ok, _ := shellsyntax.IsComplete(s); return ok })
		if err != nil {
			io.WriteString(e.env.Stdout, "\r\n")
			return nil // Ctrl-D, or the terminal went away
		}
		if strings.TrimSpace(script) == "" {
			continue
		}
		if code, ok := e.isExit(script); ok {
			e.last = code
			return nil
		}
		// Sizes noticed at the prompt are in the request already.
		select {
		case <-resize:
		default:
		}
		sizeMu.Lock()
		tty := &wire.TTY{Term: termName, Rows: rows, Cols: cols}
		sizeMu.Unlock()
		cmdIn := in.Reader()
		out := &lineedit.LastByte{W: e.env.Stdout, Last: '\n'}
		res, err := e.run(ctx, client.RunSpec{
			Request: wire.Request{Command: script, TTY: tty},
			Stdin:   cmdIn,
			Stdout:  out, Stderr: errw, Notify: errw,
			Resize: resize,
		})
		cmdIn.Stop()
		if err == nil && res.ExitCode > 128 && out.Last != '\n' {
			// Like bash after a program killed by a signal (^C).
			io.WriteString(e.env.Stdout, "\r\n")
		}
		ran := err == nil
		if err != nil {
			fmt.Fprintf(errw, "tether: %s\n", describeErr(e.target, err))
			if fatal(err) || ctx.Err() != nil {
				return exitError{255}
			}
			e.last = 255
		} else {
			e.report(res, errw)
			e.last = res.ExitCode
		}
		if err := e.queryDir(ctx, e.last, ran); err != nil {
			fmt.Fprintf(errw, "tether: %s\n", describeErr(e.target, err))
			if fatal(err) || ctx.Err() != nil {
				return exitError{255}
			}
		}
	}
}

func (e *enterer) historyPath() string {
	key := e.s.full(e.target)
	if e.temporary {
		key = e.s.full(e.target.WithSession(""))
	}
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '@', r == '.', r == '-', r == '_', r == ':':
			return r
		}
		return '_'
	}, key)
	return filepath.Join(configDir(e.env), "history", safe)
}
