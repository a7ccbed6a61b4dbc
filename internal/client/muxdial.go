package client

import (
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
	mu      sync.Mutex
	first   *mux.Channel // opened by Dial, handed to the first Open
	err     error        // or the agent's refusal of that channel
	timeout time.Duration
}

// dialMux gets a channel from t's master, so that the connection is known
// to work (and the master stays up while it is held). c is nil when there
// is no usable master (dial directly); start says to start one.
func (d *Dialer) dialMux(t, shown Target) (c *Conn, start bool) {
	path := d.MuxSocket(d.Mux.Dir, t)
	if len(path) > mux.MaxPath {
		return nil, false // a master could not listen there
	}
	ch, err := mux.Open(path, ChannelType, d.timeout())
	mc := &muxConn{path: path, first: ch, timeout: d.timeout()}
	if err != nil {
		var oe *mux.OpenError
		if !errors.As(err, &oe) {
			return nil, errors.Is(err, mux.ErrNoMaster)
		}
		// The agent refused the channel (a limit): the first Open says
		// so, as on a direct connection.
		mc.err = oe
	}
	return &Conn{Target: t, shown: shown, mux: mc, closed: make(chan struct{})}, false
}

// openMux opens a protocol channel through the master.
func (c *Conn) openMux() (ssh.Channel, error) {
	m := c.mux
	m.mu.Lock()
	var ch ssh.Channel
	if m.first != nil {
		ch = m.first
	}
	err := m.err
	m.first, m.err = nil, nil
	m.mu.Unlock()
	if ch == nil && err == nil {
		var mc *mux.Channel
		if mc, err = mux.Open(m.path, ChannelType, m.timeout); err == nil {
			ch = mc
		}
	}
	if err != nil {
		var oe *mux.OpenError
		if errors.As(err, &oe) {
			return nil, &wire.Error{Code: wire.CodeLimit, Message: c.shown.fill(oe.Message)}
		}
		return nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	return ch, nil
}

func (m *muxConn) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.first != nil {
		m.first.Close()
		m.first = nil
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
