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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/shellsyntax"
	"github.com/tether-sh/tether/internal/wire"
)

// DefaultPrompt is enter's prompt unless --prompt or TETHER_PROMPT say
// otherwise.
const DefaultPrompt = "[{target} {dir}]$ "

func enterCmd(env *Env, g *globals) *cobra.Command {
	var prompt, reconnect string
	var force bool
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
			t, err := client.ParseTarget(args[0])
			if err != nil {
				return err
			}
			rt, err := parseReconnect(reconnect)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("prompt") {
				if p := env.Getenv("TETHER_PROMPT"); p != "" {
					prompt = p
				}
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			e := &enterer{env: env, s: s, target: s.display(t), reconnect: rt, prompt: prompt, force: force}
			return e.main(ctx, cancel)
		},
	}
	f := cmd.Flags()
	f.StringVar(&prompt, "prompt", DefaultPrompt, "prompt format: {user} {host} {session} {target} {dir}")
	f.BoolVar(&force, "force", false, "take the session over from another client")
	f.StringVar(&reconnect, "reconnect-timeout", "4m", "how long to keep trying to get back after the connection breaks (0 to give up at once)")
	return cmd
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
		Stdout:  &out, Stderr: io.Discard, Notify: crlf{e.env.Stderr},
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

	in := newInput(stdin)
	var intr atomic.Int32
	li := &lineInput{r: in.reader(), intr: &intr}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{li, e.env.Stdout}, "")
	hist := loadHistory(e.historyPath(), func(s string) bool { return interrupted(&intr, s) })
	t.History = hist
	errw := crlf{e.env.Stderr}

	rows, cols := 24, 80
	var sizeMu sync.Mutex
	if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
		rows, cols = h, w
	}
	t.SetSize(cols, rows)
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
			t.SetSize(w, h)
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
		script, err := e.readInput(t, li)
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
		cmdIn := in.reader()
		out := &lastByte{w: e.env.Stdout, last: '\n'}
		res, err := e.run(ctx, client.RunSpec{
			Request: wire.Request{Command: script, TTY: tty},
			Stdin:   cmdIn,
			Stdout:  out, Stderr: errw, Notify: errw,
			Resize: resize,
		})
		cmdIn.stop()
		if err == nil && res.ExitCode > 128 && out.last != '\n' {
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

// readInput reads lines until they make a complete input. Ctrl-C abandons
// what was typed; Ctrl-D on an empty first line (or a broken terminal)
// returns an error.
func (e *enterer) readInput(t *term.Terminal, li *lineInput) (string, error) {
	var buf strings.Builder
	t.SetPrompt(e.promptText())
	li.cont.Store(false)
	for {
		line, err := t.ReadLine()
		if err != nil {
			if errors.Is(err, term.ErrPasteIndicator) {
				err = nil
			} else if buf.Len() > 0 && err == io.EOF {
				// Ctrl-D inside an unfinished construct drops it.
				buf.Reset()
				t.SetPrompt(e.promptText())
				t.Write([]byte("\n"))
				continue
			} else {
				return "", err
			}
		}
		if interrupted(li.intr, line) {
			li.intr.Add(-1)
			buf.Reset()
			t.SetPrompt(e.promptText())
			li.cont.Store(false)
			continue
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		if ok, _ := shellsyntax.IsComplete(buf.String()); ok {
			return buf.String(), nil
		}
		t.SetPrompt("> ")
		li.cont.Store(true)
	}
}

// interrupted reports whether line was ended by Ctrl-C (or Ctrl-D in a
// continuation line): see lineInput.
func interrupted(intr *atomic.Int32, line string) bool {
	return intr.Load() > 0 && (strings.HasSuffix(line, "^C") || strings.HasSuffix(line, "^D"))
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

// lastByte remembers the last byte written through it.
type lastByte struct {
	w    io.Writer
	last byte
}

func (l *lastByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.last = p[len(p)-1]
	}
	return l.w.Write(p)
}

// crlf writes to a terminal in raw mode: \n becomes \r\n.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// input reads the local terminal once, for the line editor and for the
// commands in turn: a reader that is stopped never takes bytes meant for
// the next one.
type input struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  []byte
	err  error
}

func newInput(r io.Reader) *input {
	in := &input{}
	in.cond = sync.NewCond(&in.mu)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			n, err := r.Read(chunk)
			in.mu.Lock()
			in.buf = append(in.buf, chunk[:n]...)
			if err != nil {
				in.err = err
			}
			in.cond.Broadcast()
			in.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return in
}

type inputReader struct {
	in      *input
	stopped bool // guarded by in.mu
}

func (in *input) reader() *inputReader { return &inputReader{in: in} }

func (r *inputReader) Read(p []byte) (int, error) {
	in := r.in
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.buf) == 0 && in.err == nil && !r.stopped {
		in.cond.Wait()
	}
	if r.stopped {
		return 0, io.EOF
	}
	if len(in.buf) == 0 {
		return 0, in.err
	}
	n := copy(p, in.buf)
	in.buf = in.buf[n:]
	return n, nil
}

func (r *inputReader) stop() {
	r.in.mu.Lock()
	r.stopped = true
	r.in.cond.Broadcast()
	r.in.mu.Unlock()
}

// lineInput feeds the line editor. term.Terminal ends ReadLine on Ctrl-C
// as on Ctrl-D; to clear the line instead, Ctrl-C is typed as "go to end,
// ^C, Enter", and the line it ends is dropped.
//
// In a continuation line Ctrl-D abandons the unfinished construct the same
// way (term.Terminal would read the same Ctrl-D again after returning
// io.EOF for it).
type lineInput struct {
	r       io.Reader
	pending []byte
	intr    *atomic.Int32
	cont    atomic.Bool // reading a continuation line
}

func (l *lineInput) Read(p []byte) (int, error) {
	if len(l.pending) == 0 {
		b := make([]byte, len(p))
		n, err := l.r.Read(b)
		if n == 0 {
			return 0, err
		}
		for _, c := range b[:n] {
			if c == 3 || (c == 4 && l.cont.Load()) {
				l.pending = append(l.pending, '\x05', '^', '@'+c, '\r')
				l.intr.Add(1)
				continue
			}
			l.pending = append(l.pending, c)
		}
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

// history is the line editor's history, kept in a file per session.
type history struct {
	path    string
	skip    func(string) bool
	entries []string // oldest first
}

const historyMax = 1000

func loadHistory(path string, skip func(string) bool) *history {
	h := &history{path: path, skip: skip}
	b, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines {
		if l != "" {
			h.entries = append(h.entries, l)
		}
	}
	if len(h.entries) > historyMax {
		h.entries = h.entries[len(h.entries)-historyMax:]
		if len(lines) > 2*historyMax {
			tmp := path + ".tmp"
			if os.WriteFile(tmp, []byte(strings.Join(h.entries, "\n")+"\n"), 0o600) == nil {
				os.Rename(tmp, path)
			}
		}
	}
	return h
}

func (h *history) Add(entry string) {
	if strings.TrimSpace(entry) == "" || (h.skip != nil && h.skip(entry)) {
		return
	}
	if n := len(h.entries); n > 0 && h.entries[n-1] == entry {
		return
	}
	h.entries = append(h.entries, entry)
	if len(h.entries) > historyMax {
		h.entries = h.entries[1:]
	}
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(h.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	f.WriteString(entry + "\n")
	f.Close()
}

func (h *history) Len() int { return len(h.entries) }

func (h *history) At(i int) string { return h.entries[len(h.entries)-1-i] }
