package client

import (
	"context"
	"io"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// ReceiveSpec describes a receive: output journalled while disconnected,
// then a running command followed live.
type ReceiveSpec struct {
	Target           Target
	All              bool // replay everything the journal holds, received or not
	Force            bool // take the session over from another client
	Stdout, Stderr   io.Writer
	Notify           io.Writer
	ReconnectTimeout time.Duration
	Signals          <-chan string
}

// Receive delivers a session's pending output exactly once. The exit code
// is that of the last command whose end it delivered.
func (d *Dialer) Receive(ctx context.Context, spec ReceiveSpec) (Result, error) {
	s := &receiveStream{}
	f := &follower{
		d: d, target: spec.Target, stream: s, session: spec.Target.Session,
		stdout: spec.Stdout, stderr: spec.Stderr, notifyTo: spec.Notify,
		reconnectTimeout: spec.ReconnectTimeout, signals: spec.Signals,
	}
	s.f = f
	f.res.Session = f.session
	defer f.closeOwned()
	c, err := f.dial(ctx, spec.Target)
	if err != nil {
		return f.res, err
	}
	wc, ch, err := s.open(c, spec.All, spec.Force)
	if err != nil {
		return f.res, err
	}
	return f.res, f.followToEnd(ctx, wc, ch)
}

// receiveStream follows a session's output not yet received: through
// record until when no command runs, else to the running command's exit.
type receiveStream struct {
	f     *follower
	cmd   uint32 // the command running when the receive began, or 0
	until uint64 // no command running: the last seq to deliver
}

func (s *receiveStream) resume(c *Conn) (*wire.Conn, ssh.Channel, error) {
	if s.cmd == 0 {
		return s.open(c, false, false)
	}
	return s.f.attach(c, s.cmd)
}

// takesExit: the result is the last command whose end was delivered.
func (s *receiveStream) takesExit(wire.Output) bool { return true }

func (s *receiveStream) empty() bool { return s.cmd == 0 && s.f.lastSeq.Load() >= s.until }

func (s *receiveStream) finished(o wire.Output) bool {
	if s.cmd != 0 {
		return o.Kind == wire.KindExit && o.Cmd == s.cmd
	}
	return o.Seq >= s.until
}

func (s *receiveStream) open(c *Conn, all, force bool) (*wire.Conn, ssh.Channel, error) {
	f := s.f
	wc, ch, resp, err := open(c, wire.Request{Op: wire.OpReceive, Session: f.session, Client: f.d.Client, All: all, Force: force}, c.shown)
	if err != nil {
		return nil, nil, err
	}
	if f.lastSeq.Load() == 0 || all {
		f.lastSeq.Store(resp.StartSeq)
	}
	s.cmd, s.until = resp.Cmd, resp.Until
	return wc, ch, nil
}
