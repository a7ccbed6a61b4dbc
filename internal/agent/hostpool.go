package agent

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// A plain run on a channel of its own (a fresh `tether invoke`, a Go client
// that does not keep its channel) used to cost the agent a dial of the
// session host's socket, the SO_PEERCRED check and a Hello each way; per
// run that was ~0.3 ms of the agent's CPU and ~0.13 ms of the host's over
// a run on a kept channel (#18). The agent now keeps the connection of a
// run that ended cleanly and sends the session's next plain run on it.
//
// It must know that the stream ended at a frame boundary and that the host
// reads nothing more of it: the run's request carries EndMark, the host
// sends TEnd once the client acknowledged the exit record, the agent stops
// forwarding the client's frames and answers TEnd, and the host then waits
// for another request (sessionhost.endStream). A host that does not know
// EndMark closes the connection after the stream, as before, and nothing
// is kept.
//
// A kept connection that died while idle (the session closed, its host
// restarted) fails before the host read the request sent on it, so the run
// is sent again on a new connection and runs once (the client's kept
// channels make the same argument, client/pipes.go).

// maxIdleHosts bounds the idle connections kept per session: more are only
// needed while that many runs are being started at once, and a session runs
// one command at a time.
const maxIdleHosts = 2

// hostIdleTime is how long a connection is kept unused: long enough for a
// script's next `tether invoke` or a fan-out repeated at once, short enough
// that a session idle for a moment holds nothing. Closing one wakes its
// session host once; at 15 s the closes of a fan-out's thousand connections
// fell into the bench's idle-CPU window after it (0.66 % for 1,000 idle
// sessions, 0.0 % without kept connections).
const hostIdleTime = time.Second

// hostAwaitTime bounds the wait for a kept connection's response to a run
// (a host that lives answers within a few ms).
const hostAwaitTime = 10 * time.Second

type idleHost struct {
	nc    net.Conn
	hc    *wire.Conn
	admin bool // the identity of the Hello it was opened with
	timer *time.Timer
}

// hostPool holds the idle connections to session hosts.
type hostPool struct {
	mu     sync.Mutex
	idle   map[*sessionRef][]*idleHost
	closed bool
	// For tests: connections dialled for plain runs, and runs sent on a
	// kept one; idleTime (mu) replaces hostIdleTime when set.
	dials, reuses atomic.Int64
	idleTime      time.Duration
}

// take returns an idle connection to ref opened for an identity of admin's
// kind, if one is kept.
func (p *hostPool) take(ref *sessionRef, admin bool) *idleHost {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[ref]
	for i := len(list) - 1; i >= 0; i-- {
		if ih := list[i]; ih.admin == admin && ih.timer.Stop() {
			p.idle[ref] = append(list[:i], list[i+1:]...)
			if len(p.idle[ref]) == 0 {
				delete(p.idle, ref)
			}
			return ih
		}
	}
	return nil
}

// put keeps ih for ref's next run, or closes it.
func (p *hostPool) put(ref *sessionRef, ih *idleHost) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || ref.hostsDropped || len(p.idle[ref]) >= maxIdleHosts {
		ih.nc.Close()
		return
	}
	if p.idle == nil {
		p.idle = map[*sessionRef][]*idleHost{}
	}
	idle := hostIdleTime
	if p.idleTime > 0 {
		idle = p.idleTime
	}
	ih.timer = time.AfterFunc(idle, func() { p.expire(ref, ih) })
	p.idle[ref] = append(p.idle[ref], ih)
}

func (p *hostPool) expire(ref *sessionRef, ih *idleHost) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[ref]
	for i, x := range list {
		if x == ih {
			p.idle[ref] = append(list[:i], list[i+1:]...)
			if len(p.idle[ref]) == 0 {
				delete(p.idle, ref)
			}
			ih.nc.Close()
			return
		}
	}
}

// drop closes ref's idle connections (its session ended).
func (p *hostPool) drop(ref *sessionRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ref.hostsDropped = true
	for _, ih := range p.idle[ref] {
		ih.timer.Stop()
		ih.nc.Close()
	}
	delete(p.idle, ref)
}

// close closes every idle connection and keeps no more (the agent stops;
// the hosts see their connection end and go on).
func (p *hostPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for ref, list := range p.idle {
		for _, ih := range list {
			ih.timer.Stop()
			ih.nc.Close()
		}
		delete(p.idle, ref)
	}
}

// keepsHost reports whether req may run on a kept connection: a plain run
// in a named session whose client does not keep the channel itself.
func keepsHost(ref *sessionRef, req *wire.Request) bool {
	return req.Op == wire.OpRun && req.Session != "" && !ref.meta.Temporary && !req.Stdin && req.TTY == nil &&
		!req.Detach && req.Module == "" && !req.Reuse && !req.FdPass
}

// hostForRun sends the run hreq (EndMark set) to ref's host on a kept
// connection, once the host has answered on it, or on a new one.
func (a *Agent) hostForRun(ref *sessionRef, id identity, hreq wire.Request) (net.Conn, *wire.Conn, error) {
	for {
		ih := a.hosts.take(ref, id.admin)
		if ih == nil {
			break
		}
		ih.nc.SetDeadline(time.Now().Add(hostAwaitTime))
		if ih.hc.WriteJSON(wire.TRequest, hreq) == nil && ih.hc.AwaitData() == nil {
			ih.nc.SetDeadline(time.Time{})
			a.hosts.reuses.Add(1)
			return ih.nc, ih.hc, nil
		}
		ih.nc.Close() // died while idle: the host never read the request
	}
	a.hosts.dials.Add(1)
	return a.dialSession(ref, id, hreq)
}

// relayKept relays a plain run (keepsHost) and keeps the host's connection
// when the stream ends at the host's TEnd.
func (a *Agent) relayKept(ref *sessionRef, id identity, req *wire.Request, c *wire.Conn, ch ssh.Channel) error {
	hreq := *req
	hreq.EndMark = true
	nc, hc, err := a.hostForRun(ref, id, hreq)
	if err != nil {
		if why := a.closedMeanwhile(ref); why != nil {
			return why
		}
		return wire.Errorf(wire.CodeClosed, "%v", err)
	}
	var mu sync.Mutex // ended, and the client's frames written to the host
	ended := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The client's side of a plain run is acks and signals, small
		// frames: relayed whole, so that none is cut by the end.
		for {
			t, p, err := c.Read()
			if err != nil {
				break
			}
			mu.Lock()
			if !ended {
				err = hc.Write(t, p)
			}
			mu.Unlock()
			if err != nil {
				break
			}
		}
		mu.Lock()
		if !ended {
			// The client went away mid-stream: the host sees its input
			// end, as on a channel of its own.
			if uc, ok := nc.(*net.UnixConn); ok {
				uc.CloseWrite()
			}
		}
		mu.Unlock()
	}()
	keep := relayUntilEnd(packetWriter{ch}, hc, outputBulkRead)
	if keep {
		mu.Lock()
		ended = true
		keep = hc.Write(wire.TEnd) == nil
		mu.Unlock()
	}
	// Back in the pool before the client sees its channel close, which
	// ends its run: its next run may follow at once, and found no idle
	// connection (a second dial) while this one waited for the reader.
	// Once ended, the reader writes nothing more to hc.
	if keep {
		a.hosts.put(ref, &idleHost{nc: nc, hc: hc, admin: id.admin})
	}
	ch.CloseWrite()
	ch.Close()
	<-done
	if !keep {
		nc.Close()
	}
	return nil
}

// relayUntilEnd copies the host's frames to dst until the host's TEnd,
// which it does not copy, or the end of the stream; it reports whether the
// TEnd came with nothing after it. Bulk output goes in large reads, as
// copyRelay's: frames are only followed by their lengths.
func relayUntilEnd(dst io.Writer, hc *wire.Conn, bulk int) (ended bool) {
	src := hc.Reader()
	var small [4 << 10]byte
	buf := small[:]
	var big *[]byte
	defer func() {
		if big != nil {
			relayBufs.Put(big)
		}
	}()
	var hdr [5]byte // a frame's length and type, when a read cut them
	nh := 0
	left := 0 // bytes of the current frame (header included) not yet passed
	for {
		n, err := src.Read(buf)
		p := buf[:n]
		from, i := 0, 0 // p[from:i] goes to dst
		for i < len(p) {
			if left > 0 {
				k := min(left, len(p)-i)
				i += k
				left -= k
				continue
			}
			if nh == 0 && len(p)-i >= len(hdr) {
				size := binary.BigEndian.Uint32(p[i:])
				if size == 1 && wire.Type(p[i+4]) == wire.TEnd {
					if _, werr := dst.Write(p[from:i]); werr != nil {
						return false
					}
					return i+len(hdr) == len(p) && hc.Buffered() == 0
				}
				left = len(hdr) - 1 + int(size)
				continue
			}
			// A header cut by the read: hold its bytes back until its
			// type is known.
			if _, werr := dst.Write(p[from:i]); werr != nil {
				return false
			}
			k := copy(hdr[nh:], p[i:])
			nh += k
			i += k
			from = i
			if nh < len(hdr) {
				continue
			}
			nh = 0
			size := binary.BigEndian.Uint32(hdr[:])
			if size == 1 && wire.Type(hdr[4]) == wire.TEnd {
				return i == len(p) && hc.Buffered() == 0
			}
			if _, werr := dst.Write(hdr[:]); werr != nil {
				return false
			}
			left = max(int(size)-1, 0)
		}
		if from < len(p) {
			if _, werr := dst.Write(p[from:]); werr != nil {
				return false
			}
		}
		if err != nil {
			return false // the host closed: it did not keep the connection
		}
		switch {
		case big == nil && n == len(buf):
			big = relayBufs.Get().(*[]byte)
			buf = *big
		case big != nil && n < bulk:
			relayBufs.Put(big)
			big, buf = nil, small[:]
		}
	}
}
