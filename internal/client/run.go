package client

import (
	"context"
	"io"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// RunSpec describes one command to run in a session.
type RunSpec struct {
	Target  Target       // a session address, or a bare host for a temporary session
	Request wire.Request // Op "run": Command or Argv, Detach, TTY; Session is filled from Target
	Stdin   io.Reader    // nil: the command's stdin is empty
	Stdout  io.Writer
	Stderr  io.Writer
	// ReconnectTimeout bounds automatic reconnection after a broken
	// transport; 0 means 4 minutes, negative disables it.
	ReconnectTimeout time.Duration
	Notify           io.Writer                            // reconnect notices; nil discards them
	Signals          <-chan string                        // signal names to deliver to the command
	Resize           <-chan [2]int                        // terminal rows, cols
	OnStart          func(session string, temporary bool) // called once the host accepted the command
	// KeepChannel keeps the channel, once the command has ended, for the
	// next run in the same session on the same connection: for callers
	// that hold a connection for many commands. Runs with stdin, a
	// terminal, a module or Detach never keep theirs.
	KeepChannel bool
}

// Result is how a command ended.
type Result struct {
	Session  string
	ExitCode int
	Message  string // why the host stopped it, if a limit did
	Dropped  uint64 // output bytes dropped by the journal in drop mode
}

// DefaultReconnectTimeout is how long a client tries to get back to a
// session after the transport broke, as PowerShell's robust connections.
const DefaultReconnectTimeout = 4 * time.Minute

// Run runs spec on conn (or a connection of its own when conn is nil) and
// follows its output to the end, reconnecting and resuming exactly where it
// left off if the transport breaks.
func (d *Dialer) Run(ctx context.Context, conn *Conn, spec RunSpec) (Result, error) {
	s := &runStream{}
	f := &follower{
		d: d, target: spec.Target, stream: s, conn: conn,
		stdout: spec.Stdout, stderr: spec.Stderr, notifyTo: spec.Notify,
		reconnectTimeout: spec.ReconnectTimeout, signals: spec.Signals, resize: spec.Resize,
	}
	s.f = f
	defer f.closeOwned()
	return f.res, s.run(ctx, spec)
}

// runStream follows one command: its records, to its exit record.
type runStream struct {
	f   *follower
	cmd uint32
}

func (s *runStream) resume(c *Conn) (*wire.Conn, ssh.Channel, error) { return s.f.attach(c, s.cmd) }
func (s *runStream) takesExit(o wire.Output) bool                    { return o.Cmd == s.cmd }
func (s *runStream) empty() bool                                     { return false }
func (s *runStream) finished(o wire.Output) bool {
	return o.Kind == wire.KindExit && o.Cmd == s.cmd
}

func (s *runStream) run(ctx context.Context, spec RunSpec) error {
	f := s.f
	// Only plain runs keep their channel: stdin and terminals leave state
	// on it that the next command must not inherit.
	f.keep = spec.KeepChannel && f.conn != nil && spec.Target.Session != "" && spec.Stdin == nil &&
		spec.Request.TTY == nil && !spec.Request.Detach && spec.Request.Module == ""
	if f.conn == nil {
		if _, err := f.dial(ctx, spec.Target); err != nil {
			return err
		}
	}
	req := spec.Request
	req.Op = wire.OpRun
	req.Session = spec.Target.Session
	req.Client = f.d.Client
	req.Stdin = spec.Stdin != nil
	if req.Grace == 0 {
		req.Grace = wire.Duration(f.timeout())
	}
	req.Reuse = f.keep
	wc, ch, resp, err := s.start(req)
	if err != nil {
		return err
	}
	s.cmd = resp.Cmd
	f.lastSeq.Store(resp.StartSeq)
	f.session = spec.Target.Session
	if resp.Session != nil {
		f.session = resp.Session.Name
	}
	f.res.Session = f.session
	if spec.OnStart != nil {
		spec.OnStart(f.session, resp.Session != nil && resp.Session.Temporary)
	}
	if req.Detach {
		ch.Close()
		return nil
	}
	if spec.Stdin != nil {
		f.stdin = newStdinSender(spec.Stdin)
	}
	return f.followToEnd(ctx, wc, ch)
}

// start sends req on a kept channel to the session when there is one, or
// on a new channel, and reads the host's response.
func (s *runStream) start(req wire.Request) (*wire.Conn, ssh.Channel, wire.Response, error) {
	f := s.f
	if f.keep {
		if kc, ok := f.conn.kept.take(req.Session); ok {
			var resp wire.Response
			if kc.wc.WriteJSON(wire.TRequest, req) == nil && kc.wc.ReadJSON(wire.TResponse, &resp) == nil {
				return kc.wc, kc.ch, resp, check(resp, kc.ch, f.target)
			}
			// The kept channel died while idle (session closed, agent
			// restarted): the host never read the request, so sending
			// it again on a new channel runs it once.
			kc.ch.Close()
		}
	}
	return open(f.conn, req, f.target)
}
