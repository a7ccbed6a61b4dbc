package client

import (
	"context"
	"fmt"
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
	r := &runner{d: d, receive: true, session: spec.Target.Session, spec: RunSpec{
		Target: spec.Target, Stdout: spec.Stdout, Stderr: spec.Stderr, Notify: spec.Notify,
		ReconnectTimeout: spec.ReconnectTimeout, Signals: spec.Signals,
	}}
	r.res.Session = r.session
	defer r.closeOwned()
	c, err := d.Dial(ctx, spec.Target)
	if err != nil {
		return r.res, err
	}
	r.owned = append(r.owned, c)
	r.conn = c
	wc, ch, err := r.openReceive(c, spec.All, spec.Force)
	if err != nil {
		return r.res, err
	}
	return r.res, r.followToEnd(ctx, wc, ch)
}

func (r *runner) openReceive(c *Conn, all, force bool) (*wire.Conn, ssh.Channel, error) {
	wc, ch, err := c.Open(wire.Request{Op: wire.OpReceive, Session: r.session, Client: r.d.Client, All: all, Force: force})
	if err != nil {
		return nil, nil, asError(err)
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	if !resp.OK {
		ch.Close()
		return nil, nil, c.shown.refusal(resp.Error)
	}
	if r.lastSeq.Load() == 0 || all {
		r.lastSeq.Store(resp.StartSeq)
	}
	r.cmd, r.until = resp.Cmd, resp.Until
	return wc, ch, nil
}
