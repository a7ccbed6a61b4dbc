package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/sshconn"
	"github.com/tether-sh/tether/internal/wire"
)

// ChannelType is the SSH channel type that carries Tether's wire protocol.
const ChannelType = "tether@tether.sh"

const (
	// refuseWait bounds how long a connection over MaxConnections or
	// MaxConnectionsPerUser is kept to deliver its refusal (as the answer
	// to its first channel, which a client opens at once).
	refuseWait = 2 * time.Second
	// channelGrace is how long a channel open over MaxSessionsPerConnection
	// waits for a slot: a client frees its slot when the agent's close
	// arrives, a moment before the agent has counted it free.
	channelGrace = time.Second
)

type preauthConn struct {
	c       net.Conn
	src     string
	started time.Time
	dropped bool // closed by the agent (MaxStartups), not by its client
}

// admitPreauth tracks an unauthenticated connection. A source beyond
// MaxStartupsPerSource loses its own oldest one; beyond MaxStartups the
// source holding the most loses its oldest. So a flood from one source costs
// that source, and a real user, whose handshake takes milliseconds, keeps
// hers even when she shares the flood's address.
func (a *Agent) admitPreauth(c net.Conn, src string) *preauthConn {
	p := &preauthConn{c: c, src: src, started: time.Now()}
	a.mu.Lock()
	a.preauth = append(a.preauth, p)
	var drop *preauthConn
	var why string
	if n := a.countSourceLocked(src); n > a.opts.MaxStartupsPerSource {
		drop, why = a.oldestOfLocked(src), fmt.Sprintf("MaxStartupsPerSource (%d) exceeded by %s", a.opts.MaxStartupsPerSource, src)
	} else if len(a.preauth) > a.opts.MaxStartups {
		drop, why = a.oldestOfLocked(a.busiestSourceLocked()), fmt.Sprintf("MaxStartups (%d) exceeded", a.opts.MaxStartups)
	}
	if drop != nil {
		drop.dropped = true
		a.removePreauthLocked(drop)
	}
	a.mu.Unlock()
	if drop != nil {
		a.log.Warn(why+": dropping the source's oldest unauthenticated connection",
			"remote", drop.c.RemoteAddr().String(), "age", time.Since(drop.started).Round(time.Millisecond))
		drop.c.Close()
	}
	return p
}

func (a *Agent) countSourceLocked(src string) int {
	n := 0
	for _, q := range a.preauth {
		if q.src == src {
			n++
		}
	}
	return n
}

func (a *Agent) busiestSourceLocked() string {
	counts := map[string]int{}
	best, bestN := "", 0
	for _, q := range a.preauth {
		counts[q.src]++
		if counts[q.src] > bestN {
			best, bestN = q.src, counts[q.src]
		}
	}
	return best
}

// oldestOfLocked: a.preauth is in arrival order.
func (a *Agent) oldestOfLocked(src string) *preauthConn {
	for _, q := range a.preauth {
		if q.src == src {
			return q
		}
	}
	return nil
}

func (a *Agent) removePreauthLocked(p *preauthConn) {
	for i, q := range a.preauth {
		if q == p {
			a.preauth = append(a.preauth[:i], a.preauth[i+1:]...)
			return
		}
	}
}

// donePreauth ends the tracking; it reports whether the agent dropped p.
func (a *Agent) donePreauth(p *preauthConn) (dropped bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removePreauthLocked(p)
	return p.dropped
}

// admitConn counts an authenticated connection of user against
// MaxConnections and MaxConnectionsPerUser, atomically. When it is over
// either, it is not counted and refusal says why.
func (a *Agent) admitConn(user string) (release func(), refusal string) {
	s := a.store.Effective()
	release, refusal = a.admitConnWith(s, user)
	if refusal != "" {
		// As admit: a limit another agent of the user just raised.
		a.store.Refresh()
		if now := a.store.Effective(); now != s {
			release, refusal = a.admitConnWith(now, user)
		}
	}
	return release, refusal
}

// admitConnWith is admitConn under the settings s.
func (a *Agent) admitConnWith(s config.Settings, user string) (release func(), refusal string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case s.MaxConnections > 0 && a.conns >= s.MaxConnections:
		return nil, fmt.Sprintf("MaxConnections (%d, %s) reached on %%HOST%%; retry later or ask an admin to raise it (tether config set %%HOST%% MaxConnections N)",
			s.MaxConnections, a.sourceOf("MaxConnections"))
	case s.MaxConnectionsPerUser > 0 && a.userConns[user] >= s.MaxConnectionsPerUser:
		return nil, fmt.Sprintf("MaxConnectionsPerUser (%d, %s) reached for %s on %%HOST%%; end some of your tether processes or mux masters, or ask an admin to raise it (tether config set %%HOST%% MaxConnectionsPerUser N)",
			s.MaxConnectionsPerUser, a.sourceOf("MaxConnectionsPerUser"), user)
	}
	a.conns++
	a.userConns[user]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.conns--
		if a.userConns[user]--; a.userConns[user] <= 0 {
			delete(a.userConns, user)
		}
	}, ""
}

// configFor is the server configuration of one connection: its version
// string advertises the MaxSessionsPerConnection that holds for it and
// the agent's mux channels.
func (a *Agent) configFor(maxSessions int) *ssh.ServerConfig {
	cfg := *a.server
	if maxSessions > 0 {
		cfg.ServerVersion += " " + wire.MaxSessionsMarker + strconv.Itoa(maxSessions)
	}
	// Mux channels (mux.go): a client's fan-out runs many commands on one
	// channel, so the cap costs it no extra connections.
	cfg.ServerVersion += " " + wire.MuxMarker + strconv.Itoa(wire.MaxMuxStreams)
	return &cfg
}

func (a *Agent) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	src := sourceKey(c.RemoteAddr())
	if left, refused := a.penalties.refused(src); refused {
		a.log.Debug("connection refused: source penalized for unauthenticated connections", "remote", c.RemoteAddr().String(), "left", left.Round(time.Second))
		return
	}
	p := a.admitPreauth(c, src)
	maxSessions := a.store.Effective().MaxSessionsPerConnection
	c.SetDeadline(time.Now().Add(a.opts.HandshakeTimeout))
	// sshconn: one write per packet (internal/sshconn).
	sc, chans, reqs, err := ssh.NewServerConn(sshconn.New(c), a.configFor(maxSessions))
	if a.donePreauth(p) {
		return // dropped for MaxStartups: the source paid with the connection
	}
	if err != nil {
		a.log.Debug("handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		charge := penaltyNoAuth
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			charge = penaltyGrace
		}
		if d, started := a.penalties.add(src, charge); started {
			a.log.Warn("source penalized: its connections end without authenticating; refusing it at accept",
				"source", src, "for", d.Round(time.Second))
		}
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	d := a.trackConn(sc.Close)
	defer a.untrackConn(d)
	user := sc.Permissions.Extensions["user"]
	log := a.log.With("user", user, "remote", c.RemoteAddr().String())

	release, refusal := a.admitConn(user)
	if refusal != "" {
		log.Warn("connection refused", "reason", refusal)
		a.refuseConn(sc, chans, reqs, refusal)
		return
	}
	defer release()
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
	var slots chan struct{} // one per open channel, when MaxSessionsPerConnection is set
	if maxSessions > 0 {
		slots = make(chan struct{}, maxSessions)
	}
	var waiting atomic.Int32
	full := fmt.Sprintf("MaxSessionsPerConnection (%d) reached on this connection to %%HOST%%; wait for a command to end, or use another connection", maxSessions)
	for nc := range chans {
		if t := nc.ChannelType(); t != ChannelType && t != SessionChannelType {
			refuseChannel(nc) // sshsession.go
			continue
		}
		if slots == nil {
			a.acceptChannel(ctx, nc, id, d, func() {})
			continue
		}
		select {
		case slots <- struct{}{}:
			a.acceptChannel(ctx, nc, id, d, func() { <-slots })
			continue
		default:
		}
		// Full: wait a moment for a closing channel (see channelGrace),
		// without holding up the connection's other channels.
		if int(waiting.Load()) >= maxSessions {
			nc.Reject(ssh.ResourceShortage, full)
			continue
		}
		waiting.Add(1)
		go func() {
			defer waiting.Add(-1)
			t := time.NewTimer(channelGrace)
			defer t.Stop()
			select {
			case slots <- struct{}{}:
				a.acceptChannel(ctx, nc, id, d, func() { <-slots })
			case <-t.C:
				log.Info("channel refused", "reason", "MaxSessionsPerConnection", "limit", maxSessions)
				nc.Reject(ssh.ResourceShortage, full)
			}
		}()
	}
}

// refuseConn answers the first channel of a connection over a connection
// limit with the refusal, which the client shows, and closes the connection
// at once after it (or after refuseWait, if no channel comes).
func (a *Agent) refuseConn(sc *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, msg string) {
	go ssh.DiscardRequests(reqs)
	t := time.AfterFunc(refuseWait, func() { sc.Close() })
	defer t.Stop()
	for nc := range chans {
		nc.Reject(ssh.ResourceShortage, msg)
		// Let the client read it and hang up; closing under its feet
		// could reset the connection before the refusal is read.
		t.Reset(refuseWait / 2)
		go func() {
			for nc := range chans {
				nc.Reject(ssh.ResourceShortage, msg)
			}
		}()
		sc.Wait()
		return
	}
}

// acceptChannel serves one channel of connection d (nil: the stdio agent's
// one connection); release frees its slot once both the agent is done with
// it and the client's close has arrived (the client counts its slot free
// when it has the agent's close).
func (a *Agent) acceptChannel(ctx context.Context, nc ssh.NewChannel, id identity, d *connDrain, release func()) {
	if nc.ChannelType() == SessionChannelType {
		// A stock ssh session runs from its open: a shell, a
		// subsystem, a command.
		a.beginWork(d)
		a.acceptSession(ctx, nc, id, func() { release(); a.endWork(d) }) // sshsession.go
		return
	}
	ch, creqs, err := nc.Accept()
	if err != nil {
		release()
		return
	}
	peerClosed := make(chan struct{})
	go func() {
		ssh.DiscardRequests(creqs)
		close(peerClosed)
	}()
	go func() {
		a.serveChannel(ctx, ch, id, d)
		<-peerClosed
		release()
	}()
}

// identity is who is on the other end of a connection.
type identity struct {
	user   string
	remote string
	admin  bool
}

func (a *Agent) serveChannel(ctx context.Context, ch ssh.Channel, id identity, d *connDrain) {
	defer ch.Close()
	// A channel that does not send its Hello and Request in time is
	// closed: idle channels would otherwise cost the agent memory for
	// nothing (finding: 3,000 idle channels, +46 MB).
	first := time.AfterFunc(a.opts.FirstRequestTimeout, func() { ch.Close() })
	// The client's side of a channel after its request is acks, signals
	// and stdin, relayed on in reads of at most one SSH packet (32 KiB):
	// a larger buffer would only cost every channel of a fan-out.
	c := wire.NewConnBuffer(ch, 0, 32<<10)
	if _, err := c.Handshake(wire.Hello{Software: "tether-agent"}); err != nil {
		first.Stop()
		return
	}
	var req wire.Request
	if err := c.ReadJSON(wire.TRequest, &req); err != nil {
		if first.Stop() && wire.CodeOf(err) == "" {
			c.WriteJSON(wire.TResponse, wire.Refuse(wire.Errorf(wire.CodeBadRequest, "%v", err)))
		}
		return
	}
	if !first.Stop() {
		return // timed out as the request arrived: the channel is closed
	}
	a.beginWork(d) // a stopping agent lets it finish (drain.go)
	defer a.endWork(d)
	var resp wire.Response
	var relay relayFunc
	if req.Op == wire.OpMux {
		relay = a.relayMux(id) // a fan-out's runs, as sub-streams (mux.go)
	} else {
		resp, relay = a.dispatch(ctx, id, &req)
	}
	if relay != nil {
		if err := relay(c, ch); err != nil {
			c.WriteJSON(wire.TResponse, wire.Refuse(err))
		}
		return
	}
	c.WriteJSON(wire.TResponse, resp)
	ch.CloseWrite()
}
