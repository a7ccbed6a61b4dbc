package agent

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// ChannelType is the SSH channel type that carries Tether's wire protocol.
const ChannelType = "tether@tether.sh"

type preauthConn struct {
	c       net.Conn
	started time.Time
}

// admitPreauth tracks an unauthenticated connection. Beyond MaxStartups the
// oldest one is dropped, so a flood of idle connections cannot lock out a
// real user, whose handshake takes milliseconds.
func (a *Agent) admitPreauth(c net.Conn) *preauthConn {
	p := &preauthConn{c: c, started: time.Now()}
	a.mu.Lock()
	a.preauth = append(a.preauth, p)
	var drop *preauthConn
	if len(a.preauth) > a.opts.MaxStartups {
		drop = a.preauth[0]
		a.preauth = a.preauth[1:]
	}
	a.mu.Unlock()
	if drop != nil {
		a.log.Warn("MaxStartups exceeded: dropping the oldest unauthenticated connection",
			"limit", a.opts.MaxStartups, "remote", drop.c.RemoteAddr().String(), "age", time.Since(drop.started).Round(time.Millisecond))
		drop.c.Close()
	}
	return p
}

func (a *Agent) donePreauth(p *preauthConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, q := range a.preauth {
		if q == p {
			a.preauth = append(a.preauth[:i], a.preauth[i+1:]...)
			return
		}
	}
}

func (a *Agent) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	p := a.admitPreauth(c)
	c.SetDeadline(time.Now().Add(a.opts.HandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, a.server)
	a.donePreauth(p)
	if err != nil {
		a.log.Debug("handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	user := sc.Permissions.Extensions["user"]
	log := a.log.With("user", user, "remote", c.RemoteAddr().String())

	limit := a.store.Effective().MaxConnections
	a.mu.Lock()
	a.conns++
	over := limit > 0 && a.conns > limit
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.conns--
		a.mu.Unlock()
	}()
	if over {
		msg := fmt.Sprintf("MaxConnections (%d) reached on this host; retry later or ask an admin to raise it (tether config set %%HOST%% MaxConnections N)", limit)
		log.Warn("connection refused", "reason", msg)
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			nc.Reject(ssh.ResourceShortage, msg)
		}
		return
	}
	log.Info("connection opened")
	defer log.Info("connection closed")

	go func() {
		for r := range reqs {
			// keepalive@openssh.com and friends: answer so clients can probe.
			if r.WantReply {
				r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	id := identity{user: user, remote: c.RemoteAddr().String(), admin: sc.Permissions.Extensions["admin"] == "1"}
	for nc := range chans {
		if nc.ChannelType() != ChannelType {
			nc.Reject(ssh.UnknownChannelType, "tether agents only speak "+ChannelType+"; use the tether client")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(creqs)
		go a.serveChannel(ctx, ch, id)
	}
}

// identity is who is on the other end of a connection.
type identity struct {
	user   string
	remote string
	admin  bool
}

func (a *Agent) serveChannel(ctx context.Context, ch ssh.Channel, id identity) {
	defer ch.Close()
	// The client's side of a channel after its request is acks, signals
	// and stdin, relayed on in reads of at most one SSH packet (32 KiB):
	// a larger buffer would only cost every channel of a fan-out.
	c := wire.NewConnBuffer(ch, 0, 32<<10)
	if _, err := c.Handshake(wire.Hello{Software: "tether-agent"}); err != nil {
		return
	}
	var req wire.Request
	if err := c.ReadJSON(wire.TRequest, &req); err != nil {
		if wire.CodeOf(err) == "" {
			c.WriteJSON(wire.TResponse, refuse(wire.Errorf(wire.CodeBadRequest, "%v", err)))
		}
		return
	}
	resp, relay := a.dispatch(ctx, id, &req)
	if relay != nil {
		if err := relay(c, ch); err != nil {
			c.WriteJSON(wire.TResponse, refuse(err))
		}
		return
	}
	c.WriteJSON(wire.TResponse, resp)
	ch.CloseWrite()
}

func refuse(err error) wire.Response {
	if e, ok := err.(*wire.Error); ok {
		return wire.Response{Error: e}
	}
	return wire.Response{Error: wire.Errorf(wire.CodeInternal, "%v", err)}
}
