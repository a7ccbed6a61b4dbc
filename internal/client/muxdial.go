package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/mux"
	"github.com/tether-sh/tether/internal/wire"
)

// MuxOptions makes a Dialer share one SSH connection per host among
// processes, as OpenSSH's ControlMaster/ControlPersist (see internal/mux).
type MuxOptions struct {
	Dir string // the sockets' directory (mux.Dir)
	// Start, if set, starts a master for t in the background. Dial calls it
	// after a direct dial when no master was running for t's host.
	Start func(t Target)
	// SSHOnly limits the masters to ssh:// targets (the default for them,
	// without TETHER_CONTROL_PERSIST): direct agents are dialled directly.
	SSHOnly bool
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return 10 * time.Second
}

// MuxSocket is the path of the master's socket for t (with the dialer's
// default user) in dir.
func (d *Dialer) MuxSocket(dir string, t Target) string {
	return mux.SocketPath(dir, t.connKey(d.DefaultUser))
}

// muxConn is a connection whose channels a master lends.
type muxConn struct {
	path    string
	timeout time.Duration
	// direct dials the agent without the master (and starts a new one):
	// for a master that closes without answering a channel request.
	direct func() (*Conn, error)

	dialMu sync.Mutex // held while direct dials: one fallback connection, not one per Open

	mu      sync.Mutex
	pending *mux.Pending // asked for by Dial; the first Open sends its request with it
	fell    *Conn        // direct's connection, once made: every later Open uses it
	closed  bool
}

// dialMux connects to t's master and asks for the first channel, whose
// answer the first Open reads with its request's. c is nil when no master
// listens (dial directly); start says to start one. direct is the dial
// without a master, for a master that turns out not to answer; it runs
// at the first Open, maybe long after Dial (a pooled connection's), when
// ctx may be done, so it gets ctx without its cancellation (the dialer's
// timeout bounds it).
func (d *Dialer) dialMux(ctx context.Context, t, shown Target, direct func(context.Context) (*Conn, error)) (c *Conn, start bool) {
	path := d.MuxSocket(d.Mux.Dir, t)
	if len(path) > mux.MaxPath {
		return nil, false // a master could not listen there
	}
	p, err := mux.Start(path, ChannelType, d.timeout())
	if err != nil {
		return nil, errors.Is(err, mux.ErrNoMaster)
	}
	mc := &muxConn{path: path, pending: p, timeout: d.timeout(), direct: func() (*Conn, error) {
		c, err := direct(context.WithoutCancel(ctx))
		if err == nil && d.Mux.Start != nil {
			d.Mux.Start(t)
		}
		return c, err
	}}
	return &Conn{Target: t, shown: shown, mux: mc, closed: make(chan struct{})}, false
}

// openMuxRequest opens a protocol channel through the master and sends
// req on it, with the channel request: one round trip to the master.
func (c *Conn) openMuxRequest(req wire.Request) (*wire.Conn, ssh.Channel, error) {
	m := c.mux
	m.mu.Lock()
	p, fell := m.pending, m.fell
	m.pending = nil
	m.mu.Unlock()
	if fell != nil {
		if p != nil {
			p.Close()
		}
		return fell.openChannelRequest(req)
	}
	hello := wire.Hello{Software: "tether-client"}
	first, err := wire.EncodeHandshake(hello, req, 0)
	if err != nil {
		if p != nil {
			p.Close()
		}
		return nil, nil, err
	}
	if p == nil {
		p, err = mux.Start(m.path, ChannelType, m.timeout)
	}
	var ch *mux.Channel
	if err == nil {
		ch, err = p.Finish(first)
	}
	if errors.Is(err, mux.ErrNoMaster) {
		return c.fallBack(req, err)
	}
	if err != nil {
		var oe *mux.OpenError
		if errors.As(err, &oe) {
			return nil, nil, &wire.Error{Code: wire.CodeLimit, Message: c.shown.fill(oe.Message)}
		}
		if errors.Is(err, mux.ErrNoAnswer) {
			// Sent again directly, it could run twice.
			return nil, nil, fmt.Errorf("%w: the connection master %s: %v; the request may have reached the agent, so it is not sent again (tether list %s shows whether it runs)",
				ErrTransport, m.path, err, c.shown)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	wc := wire.NewConn(ch, 0)
	if _, err := wc.ReadPeerHello(hello); err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	return wc, ch, nil
}

// fallBack sends req on a direct connection, made once, after the master
// did not answer (cause).
func (c *Conn) fallBack(req wire.Request, cause error) (*wire.Conn, ssh.Channel, error) {
	d, err := c.mux.fallBackConn()
	if err != nil {
		// The direct dial's error as it is (a *HostError says auth or
		// host key, which callers act on), with why it was tried.
		return nil, nil, fmt.Errorf("%w (after the connection master closed without answering: %v)", err, cause)
	}
	return d.openChannelRequest(req)
}

// fallBackConn is the direct connection, dialled on first use. The dial
// runs outside mu, so that Close does not wait for it.
func (m *muxConn) fallBackConn() (*Conn, error) {
	m.dialMu.Lock()
	defer m.dialMu.Unlock()
	m.mu.Lock()
	d, closed := m.fell, m.closed
	m.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%w: the connection is closed", ErrTransport)
	}
	if d != nil {
		return d, nil
	}
	d, err := m.direct()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed { // closed while dialling: the connection is not wanted
		d.Close()
		return nil, fmt.Errorf("%w: the connection is closed", ErrTransport)
	}
	m.fell = d
	return d, nil
}

func (m *muxConn) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.pending != nil {
		m.pending.Close()
		m.pending = nil
	}
	if m.fell != nil {
		m.fell.Close()
	}
}

// OpenChannel opens a raw channel of Tether's type on a direct connection
// (for a master to lend).
func (c *Conn) OpenChannel() (ssh.Channel, <-chan *ssh.Request, error) {
	if c.ssh == nil {
		return nil, nil, errors.New("not a direct connection")
	}
	return c.ssh.OpenChannel(ChannelType, nil)
}

// Muxed reports whether the connection's channels come from a master.
func (c *Conn) Muxed() bool { return c.mux != nil }
