package client

import (
	"github.com/tether-sh/tether/internal/clock"

	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/sshconn"
	"github.com/tether-sh/tether/internal/sshtransport"
	"github.com/tether-sh/tether/internal/wire"
)

// ChannelType is the SSH channel type of Tether's protocol.
const ChannelType = "tether@tether.sh"

// Sentinel errors callers act on; the messages from the host say the rest.
var (
	ErrNotFound  = errors.New("session not found")
	ErrClosed    = errors.New("session closed")
	ErrBusy      = errors.New("session busy")
	ErrLimit     = errors.New("limit reached")
	ErrDenied    = errors.New("permission denied")
	ErrConnect   = errors.New("cannot connect")
	ErrHostKey   = errors.New("host key refused")
	ErrAuth      = errors.New("authentication refused")
	ErrDetached  = errors.New("detached")
	ErrTransport = errors.New("connection lost")
)

// Dialer opens SSH connections to agents.
type Dialer struct {
	Signers     []ssh.Signer
	KnownHosts  *sshauth.KnownHosts
	DefaultUser string
	Timeout     time.Duration // connect + handshake; default 10s
	Keepalive   time.Duration // interval; a connection missing 3 replies is closed; default 15s
	Client      wire.Client   // who we are, for "Busy: attached to ..."
	// Dial, if set, replaces net.Dialer (tests, proxies).
	DialNet func(ctx context.Context, network, addr string) (net.Conn, error)
	// LoadSigners, if set, is called when a direct dial needs keys and
	// Signers is empty, so a process whose channels come from a master
	// never loads them. It should cache its result.
	LoadSigners func() ([]ssh.Signer, error)
	// Mux, if set, takes channels from a master process when one runs for
	// the host (muxdial.go).
	Mux *MuxOptions
	// SSH says how ssh:// targets are reached (sshdial.go); nil: from
	// the environment.
	SSH *SSHOptions
	// Clock paces reconnect backoff and the ack loop (nil: the real
	// clock); tests pass a clock.Fake so that backoff costs no real time.
	Clock clock.Clock
}

// Conn is an SSH connection to one agent.
type Conn struct {
	Target Target
	shown  Target      // as the user wrote it, for messages
	ssh    *ssh.Client // nil when a master lends the channels
	mux    *muxConn
	closed chan struct{}
	once   sync.Once
	kept   keptChannels // idle channels kept for the next run (pipes.go)
	// slots holds one token per open channel when the agent advertises
	// MaxSessionsPerConnection (wire.ParseMaxSessions); nil: no cap.
	slots chan struct{}

	// Mux channels (mux.go): muxK sub-streams each, as the agent
	// advertises (0: it serves none); used for runs once a Pool sets
	// muxOn.
	muxK       int
	muxOn      atomic.Bool
	muxMu      sync.Mutex
	muxCond    *sync.Cond // on muxMu: a sub-stream's place or a channel appeared, or the connection ended
	muxChans   []*muxChan
	muxWaiting int // openSub calls waiting for a place
	muxOpening int // mux channels being opened
}

// MaxChannels is the number of channels the agent lets this connection
// hold at once; 0 means no limit (or a master lends the channels).
func (c *Conn) MaxChannels() int { return cap(c.slots) }

// acquireSlot waits for a free channel slot. An idle kept channel is
// closed to make room: a connection that keeps channels to many sessions
// must not wait on itself.
func (c *Conn) acquireSlot() error {
	if c.slots == nil {
		return nil
	}
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	if !c.closeIdleMux() {
		c.evictKept()
	}
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-c.closed:
		return fmt.Errorf("%w: connection to %s closed", ErrTransport, c.shown.HostString())
	}
}

func (c *Conn) releaseSlot() {
	if c.slots != nil {
		<-c.slots
	}
}

// evictKept closes one idle kept channel, if there is one.
func (c *Conn) evictKept() {
	c.kept.mu.Lock()
	var victim keptChannel
	for s, list := range c.kept.idle {
		if len(list) > 0 {
			victim = list[0]
			c.kept.idle[s] = list[1:]
			break
		}
	}
	c.kept.mu.Unlock()
	if victim.ch != nil {
		victim.ch.Close()
	}
}

// HostError is a failure to reach or log in to a host, before any command ran.
type HostError struct {
	Target Target
	Kind   error // ErrConnect, ErrHostKey or ErrAuth
	Err    error
}

func (e *HostError) Error() string { return e.Err.Error() }

func (e *HostError) Unwrap() []error { return []error{e.Kind, e.Err} }

// Dial connects and authenticates to t's agent.
func (d *Dialer) Dial(ctx context.Context, t Target) (*Conn, error) {
	if t.SSH {
		// A tether master (by default for ssh:// hosts, see MuxOptions)
		// holds one stdio agent's connection, so a later command starts
		// neither ssh nor a remote process.
		if d.Mux != nil {
			c, start := d.dialMux(ctx, t, t.WithSession(""), func(ctx context.Context) (*Conn, error) { return d.dialSSH(ctx, t) })
			if c != nil {
				return c, nil
			}
			c, err := d.dialSSH(ctx, t)
			if err == nil && start && d.Mux.Start != nil {
				d.Mux.Start(t)
			}
			return c, err
		}
		return d.dialSSH(ctx, t)
	}
	shown := t.WithSession("")
	// ssh_config's HostName, User, IdentityFile and ProxyJump, read by
	// the user's ssh (sshconfig.go).
	r, err := d.resolveDirect(ctx, t)
	if err != nil {
		return nil, &HostError{t.WithUser(d.DefaultUser), ErrAuth, err}
	}
	if t.User == "" {
		t.User = r.User
	}
	t = t.WithUser(d.DefaultUser)
	startMaster := false
	if d.Mux != nil && !d.Mux.SSHOnly {
		var c *Conn
		if c, startMaster = d.dialMux(ctx, t, shown, func(ctx context.Context) (*Conn, error) { return d.dialAgent(ctx, t, shown, r) }); c != nil {
			return c, nil
		}
	}
	c, err := d.dialAgent(ctx, t, shown, r)
	if err == nil && startMaster && d.Mux.Start != nil {
		d.Mux.Start(t)
	}
	return c, err
}

// dialAgent connects and authenticates to the agent r resolved t to,
// without a master.
func (d *Dialer) dialAgent(ctx context.Context, t, shown Target, r resolved) (*Conn, error) {
	addr := r.addr()
	signers := d.Signers
	if len(signers) == 0 && d.LoadSigners != nil {
		var err error
		if signers, err = d.LoadSigners(); err != nil {
			// As a refused key: retrying (reconnect) cannot help.
			return nil, &HostError{t, ErrAuth, err}
		}
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := d.DialNet
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var nc net.Conn
	var err error
	if r.Jump != "" {
		sc, err := d.dialJump(r.Jump, addr)
		if err != nil {
			return nil, &HostError{t, ErrConnect, fmt.Errorf("cannot connect to %s through %s: %w", addr, r.Jump, err)}
		}
		nc = sc
	} else if nc, err = dial(ctx, "tcp", addr); err != nil {
		return nil, &HostError{t, ErrConnect, fmt.Errorf("cannot connect to %s: %w", addr, unwrapOp(err))}
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	var banner strings.Builder
	if len(r.Identities) > 0 {
		signers = append(identitySigners(r.Identities, signers), signers...)
	}
	cfg := &ssh.ClientConfig{
		User:            t.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: d.KnownHosts.HostKeyCallback(),
		BannerCallback: func(msg string) error {
			banner.WriteString(msg)
			return nil
		},
		ClientVersion: "SSH-2.0-tether",
		Timeout:       timeout,
	}
	// Host keys are known by the address dialled (ssh_config's HostName),
	// as ssh knows them.
	if algs := d.KnownHosts.HostKeyAlgorithms(addr); len(algs) > 0 {
		cfg.HostKeyAlgorithms = algs
	}
	// sshconn: one write per packet (internal/sshconn).
	sc, chans, reqs, err := ssh.NewClientConn(sshconn.New(nc), addr, cfg)
	if err != nil {
		nc.Close()
		if jc, ok := nc.(*sshtransport.Conn); ok {
			// ssh -W failed: its own line says why (jump host down,
			// refused, forwarding denied).
			if code, exited := jc.Wait(5 * time.Second); exited && code != 0 {
				return nil, &HostError{t, ErrConnect, fmt.Errorf("cannot connect to %s through %s: %s", addr, r.Jump, jc.Err().Line)}
			}
		}
		var hk *sshauth.HostKeyChangedError
		switch {
		case errors.As(err, &hk):
			return nil, &HostError{t, ErrHostKey, hk}
		case strings.Contains(err.Error(), "unable to authenticate"):
			msg := fmt.Sprintf("permission denied (publickey) for %s", t.User)
			if b := strings.TrimSpace(banner.String()); b != "" {
				msg += ": " + strings.TrimPrefix(b, "tether: ")
			} else {
				msg += "; is your key in the host's authorized_keys?"
			}
			return nil, &HostError{t, ErrAuth, errors.New(msg)}
		case ctx.Err() != nil:
			return nil, &HostError{t, ErrConnect, fmt.Errorf("ssh handshake with %s timed out after %s", addr, timeout)}
		}
		return nil, &HostError{t, ErrConnect, fmt.Errorf("ssh handshake with %s: %w", addr, err)}
	}
	nc.SetDeadline(time.Time{})
	c := &Conn{Target: t, shown: shown, ssh: ssh.NewClient(sc, chans, reqs), closed: make(chan struct{})}
	if n := wire.ParseMaxSessions(string(sc.ServerVersion())); n > 0 {
		c.slots = make(chan struct{}, n)
	}
	c.muxK = wire.ParseMux(string(sc.ServerVersion()))
	c.muxCond = sync.NewCond(&c.muxMu)
	go func() {
		c.ssh.Wait()
		c.once.Do(func() { close(c.closed) })
		c.wakeMux()
	}()
	ka := d.Keepalive
	if ka == 0 {
		ka = 15 * time.Second
	}
	if ka > 0 {
		go c.keepalive(ka)
	}
	return c, nil
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// keepalive probes the agent; three unanswered probes close the connection,
// which turns a silent network cut into an error the reconnect logic sees.
func (c *Conn) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case err := <-reply:
			if err != nil {
				c.Close()
				return
			}
			missed = 0
		case <-time.After(every):
			missed++
			if missed >= 3 {
				c.Close()
				return
			}
		case <-c.closed:
			return
		}
	}
}

// Close closes the connection.
func (c *Conn) Close() error {
	if c.mux != nil {
		c.mux.close()
		c.once.Do(func() { close(c.closed) })
		return nil
	}
	err := c.ssh.Close()
	c.once.Do(func() { close(c.closed) })
	c.wakeMux()
	return err
}

// wakeMux wakes openSub calls waiting on a connection that ended.
func (c *Conn) wakeMux() {
	if c.muxCond != nil {
		c.muxMu.Lock()
		c.muxCond.Broadcast()
		c.muxMu.Unlock()
	}
}

// Done is closed when the connection is gone.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Open opens a protocol channel and sends req, or, for a pool's run that a
// mux channel can carry, a sub-stream of one (mux.go). The caller reads
// the response.
func (c *Conn) Open(req wire.Request) (*wire.Conn, ssh.Channel, error) {
	if c.muxable(req) {
		return c.openSub(req)
	}
	return c.openChannelRequest(req)
}

// openChannelRequest opens a channel of its own for req.
func (c *Conn) openChannelRequest(req wire.Request) (*wire.Conn, ssh.Channel, error) {
	if c.mux != nil {
		return c.openMuxRequest(req)
	}
	var ch ssh.Channel
	{
		if err := c.acquireSlot(); err != nil {
			return nil, nil, err
		}
		sch, reqs, err := c.openChannel()
		if err != nil {
			c.releaseSlot()
			var oce *ssh.OpenChannelError
			if errors.As(err, &oce) {
				return nil, nil, &wire.Error{Code: wire.CodeLimit, Message: c.shown.fill(oce.Message)}
			}
			return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
		}
		go func() {
			// reqs ends when the agent's close arrives (or the
			// connection is gone): only then has the agent counted
			// the channel's slot free.
			ssh.DiscardRequests(reqs)
			c.releaseSlot()
		}()
		ch = sch
	}
	wc := wire.NewConn(ch, 0)
	if _, err := wc.HandshakeRequest(wire.Hello{Software: "tether-client"}, req); err != nil {
		ch.Close()
		if errors.Is(err, wire.ErrFrameTooLarge) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	return wc, ch, nil
}

// capRetryFor bounds how long openChannel retries a channel the agent
// refused for MaxSessionsPerConnection although this side counted a free
// slot. This side frees a slot when the agent's close arrives; the agent
// frees it when this side's close reaches it and waits channelGrace (1 s)
// for that before refusing — a loaded host can take longer.
const capRetryFor = 5 * time.Second

// capRefused, when set (tests), is called before each retry of a channel
// refused for the cap.
var capRefused func()

// openChannel opens a channel on the held slot, retrying (up to
// capRetryFor, backing off) while the agent refuses it for
// MaxSessionsPerConnection: with the slot counted free here, that refusal
// is the agent not having seen a close yet, not a full connection.
func (c *Conn) openChannel() (ssh.Channel, <-chan *ssh.Request, error) {
	wait, waited := 20*time.Millisecond, time.Duration(0)
	for {
		ch, reqs, err := c.ssh.OpenChannel(ChannelType, nil)
		var oce *ssh.OpenChannelError
		if err == nil || c.slots == nil || waited >= capRetryFor || !errors.As(err, &oce) ||
			oce.Reason != ssh.ResourceShortage || !strings.Contains(oce.Message, "MaxSessionsPerConnection") {
			return ch, reqs, err
		}
		if capRefused != nil {
			capRefused()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
			return nil, nil, err
		}
		waited += wait
		wait = min(2*wait, time.Second)
	}
}

// Call sends one request and returns its response; a refusal is an error
// wrapping the matching sentinel.
func (c *Conn) Call(ctx context.Context, req wire.Request) (wire.Response, error) {
	wc, ch, err := c.Open(req)
	if err != nil {
		return wire.Response{}, asError(err)
	}
	defer ch.Close()
	type result struct {
		resp wire.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = wc.ReadJSON(wire.TResponse, &r.resp)
		done <- r
	}()
	select {
	case <-ctx.Done():
		return wire.Response{}, ctx.Err()
	case r := <-done:
		if r.err != nil {
			return r.resp, fmt.Errorf("%w: %v", ErrTransport, r.err)
		}
		if !r.resp.OK {
			return r.resp, c.shown.refusal(r.resp.Error)
		}
		return r.resp, nil
	}
}

// RemoteError is a refusal from the host, with the sentinel it matches.
type RemoteError struct {
	Code, Message string
	kind          error
}

func (e *RemoteError) Error() string { return e.Message }

func (e *RemoteError) Unwrap() error { return e.kind }

// asError maps a wire refusal onto the sentinel errors.
func asError(err error) error {
	var we *wire.Error
	if !errors.As(err, &we) {
		if err == nil {
			return nil
		}
		return err
	}
	if we == nil {
		return &RemoteError{Code: wire.CodeInternal, Message: "the host refused without saying why", kind: ErrDenied}
	}
	kind := map[string]error{
		wire.CodeNotFound:     ErrNotFound,
		wire.CodeClosed:       ErrClosed,
		wire.CodeBusy:         ErrBusy,
		wire.CodeLimit:        ErrLimit,
		wire.CodeDenied:       ErrDenied,
		wire.CodeDisconnected: ErrBusy,
		wire.CodeExists:       ErrBusy,
	}[we.Code]
	if kind == nil {
		kind = ErrDenied
	}
	return &RemoteError{Code: we.Code, Message: we.Message, kind: kind}
}

// fill puts the host's address where a message from the host says %HOST%.
func (t Target) fill(msg string) string {
	return strings.ReplaceAll(msg, "%HOST%", t.HostString())
}

// refusal turns a host's refusal into an error, naming this host.
func (t Target) refusal(e *wire.Error) error {
	if e == nil {
		return asError(e)
	}
	return asError(&wire.Error{Code: e.Code, Message: t.fill(e.Message)})
}
