package agent

import (
	"encoding/binary"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// A mux channel (wire.OpMux) carries up to wire.MaxMuxStreams runs at once,
// each a sub-stream relayed to its session's host as a run on a channel of
// its own would be: a fan-out of 256 runs over one connection then needs
// ~16 channels, within MaxSessionsPerConnection, instead of 256 channels
// over 26 connections. What the cap protects holds: a connection still has
// at most MaxSessionsPerConnection channels, each at most MaxMuxStreams
// runs, every run is one of a session the caller owns, started at once by
// its request (no idle sub-stream waits), and it counts against the
// session's and the user's limits as any run does (the session host
// admits it).

// muxInbox is how many of the client's frames (acks, signals) for one
// sub-stream wait for its session host's connection before the channel's
// reader waits too.
const muxInbox = 64

// muxClientFrameMax bounds one client frame on a sub-stream: a plain run's
// client sends only acks and signals (tens of bytes). With it, what the
// inboxes of a channel can hold while a session host does not read (its
// user stopped it) is muxInbox × MaxMuxStreams × this, 1 MiB, not the
// gigabyte that 1 MiB frames would queue in the root agent.
const muxClientFrameMax = 1 << 10

// relayMux serves a mux channel after its request.
func (a *Agent) relayMux(id identity) relayFunc {
	return func(c *wire.Conn, ch ssh.Channel) error {
		if err := c.WriteJSON(wire.TResponse, wire.Response{OK: true}); err != nil {
			return nil
		}
		m := &muxRelay{a: a, id: id, c: c, subs: map[uint32]*muxSub{}}
		m.serve()
		// The client is gone or broke the protocol: its sub-streams'
		// hosts see their input end (as at a channel's close) and the
		// relays end when the hosts hang up.
		m.mu.Lock()
		for _, s := range m.subs {
			s.closeInbox()
		}
		m.mu.Unlock()
		m.wg.Wait()
		ch.CloseWrite()
		return nil
	}
}

type muxRelay struct {
	a  *Agent
	id identity
	c  *wire.Conn // the channel: writes are serialised by wire.Conn

	mu     sync.Mutex
	subs   map[uint32]*muxSub // started, not yet closed both ways
	last   uint32             // the highest id started: ids only grow
	active int
	wg     sync.WaitGroup
}

type muxSub struct {
	inbox    chan []byte // the client's frames for the host, re-framed
	once     sync.Once
	hostDone bool // the host's side ended (MuxClose sent)
	cliDone  bool // the client's MuxClose arrived
}

func (s *muxSub) closeInbox() { s.once.Do(func() { close(s.inbox) }) }

// serve reads the client's frames until the channel ends or breaks the
// protocol (a frame that is not TMux, an id that does not grow).
func (m *muxRelay) serve() {
	for {
		t, p, err := m.c.Read()
		if err != nil {
			return
		}
		if t != wire.TMux {
			m.a.log.Debug("mux channel: closing on a frame that is not mux", "type", t.String(), "user", m.id.user)
			return
		}
		sid, it, inner, err := wire.DecodeMux(p)
		if err != nil {
			return
		}
		switch it {
		case wire.TRequest:
			m.mu.Lock()
			if sid <= m.last {
				m.mu.Unlock()
				m.a.log.Debug("mux channel: closing on a sub-stream id that does not grow", "id", sid, "user", m.id.user)
				return
			}
			m.last = sid
			var req wire.Request
			if err := wire.DecodeJSON(wire.TRequest, inner, &req); err != nil {
				m.mu.Unlock()
				m.refuse(sid, wire.Errorf(wire.CodeBadRequest, "%v", err))
				continue
			}
			if m.active >= wire.MaxMuxStreams {
				m.mu.Unlock()
				m.refuse(sid, wire.Errorf(wire.CodeLimit, "%d runs already on this mux channel to %%HOST%% (at most %d); wait for one to end", m.active, wire.MaxMuxStreams))
				continue
			}
			s := &muxSub{inbox: make(chan []byte, muxInbox)}
			m.subs[sid] = s
			m.active++
			m.wg.Add(1)
			m.mu.Unlock()
			go m.run(sid, s, req)
		case wire.MuxClose:
			m.mu.Lock()
			if s := m.subs[sid]; s != nil && !s.cliDone {
				s.cliDone = true
				s.closeInbox()
				m.doneLocked(sid, s)
			}
			m.mu.Unlock()
		default:
			if (it != wire.TAck && it != wire.TSignal) || len(inner) > muxClientFrameMax {
				m.a.log.Debug("mux channel: closing on a client frame a plain run does not send", "type", it.String(), "bytes", len(inner), "user", m.id.user)
				return
			}
			m.mu.Lock()
			s := m.subs[sid]
			closed := s == nil || s.cliDone
			m.mu.Unlock()
			if closed {
				continue // a late ack for a run that ended
			}
			f := make([]byte, 5+len(inner))
			binary.BigEndian.PutUint32(f, uint32(1+len(inner)))
			f[4] = byte(it)
			copy(f[5:], inner)
			s.inbox <- f // only the reader sends and closes (under cliDone)
		}
	}
}

// doneLocked forgets s once both of its sides ended.
func (m *muxRelay) doneLocked(sid uint32, s *muxSub) {
	if s.hostDone && s.cliDone {
		delete(m.subs, sid)
		m.active--
	}
}

// refuse answers a sub-stream that cannot start and ends it; it never
// counted as active.
func (m *muxRelay) refuse(sid uint32, err error) {
	m.c.WriteMuxJSON(sid, wire.TResponse, wire.Refuse(err))
	m.c.WriteMux(sid, wire.MuxClose, nil)
}

// run relays one sub-stream: its request to the session's host, the host's
// frames to the channel, the client's (from the inbox) to the host.
func (m *muxRelay) run(sid uint32, s *muxSub, req wire.Request) {
	defer m.wg.Done()
	defer func() {
		// Counted free before the client can know it is: the client's
		// next request may arrive before this goroutine runs again.
		m.mu.Lock()
		s.hostDone = true
		m.doneLocked(sid, s)
		m.mu.Unlock()
		m.c.WriteMux(sid, wire.MuxClose, nil)
	}()
	nc, hc, ref, err := m.a.dialMuxRun(m.id, &req)
	if err != nil {
		m.c.WriteMuxJSON(sid, wire.TResponse, wire.Refuse(err))
		go func() {
			for range s.inbox { // until the client's MuxClose
			}
		}()
		return
	}
	// As relayKept (hostpool.go): the host's TEnd ends the stream at a
	// frame boundary; after it nothing of the client's reaches the host,
	// and the connection is kept for the session's next run.
	var mu sync.Mutex
	ended := false
	go func() {
		for f := range s.inbox {
			mu.Lock()
			var err error
			if !ended {
				_, err = nc.Write(f)
			}
			mu.Unlock()
			if err != nil {
				break
			}
		}
		mu.Lock()
		if uc, ok := nc.(*net.UnixConn); ok && !ended {
			uc.CloseWrite()
		}
		mu.Unlock()
		for range s.inbox {
		}
	}()
	for {
		t, p, err := hc.Read()
		if err != nil {
			nc.Close()
			return
		}
		if t == wire.TEnd {
			mu.Lock()
			ended = true
			keep := len(p) == 0 && hc.Buffered() == 0 && hc.Write(wire.TEnd) == nil
			mu.Unlock()
			if keep {
				m.a.hosts.put(ref, &idleHost{nc: nc, hc: hc, admin: m.id.admin})
			} else {
				nc.Close()
			}
			return
		}
		if err := m.c.WriteMux(sid, t, p); err != nil {
			nc.Close()
			return
		}
	}
}

// dialMuxRun checks a sub-stream's request as dispatch and relaySession
// check a channel's, and connects to the session's host with it.
func (a *Agent) dialMuxRun(id identity, req *wire.Request) (net.Conn, *wire.Conn, *sessionRef, error) {
	if req.Op != wire.OpRun || req.Session == "" || req.Stdin || req.TTY != nil || req.Detach || req.Module != "" || req.Reuse {
		return nil, nil, nil, wire.Errorf(wire.CodeBadRequest, "a mux channel runs only plain commands in named sessions (no stdin, terminal, module, --detach or kept channel); got op %q", req.Op)
	}
	if err := checkNames(req); err != nil {
		return nil, nil, nil, err
	}
	if req.IdleTimeout != "" {
		if _, err := a.checkIdleTimeout(req.IdleTimeout); err != nil {
			return nil, nil, nil, err
		}
	}
	ref := a.lookup(id.user, req.Session)
	if ref == nil {
		return nil, nil, nil, a.notFound(id.user, req.Session)
	}
	if ref.broken != "" {
		return nil, nil, nil, wire.Errorf(wire.CodeClosed, "session %s is Broken: %s; remove it with tether remove", ref.name, ref.broken)
	}
	hreq := *req
	hreq.FdPass = false
	var nc net.Conn
	var hc *wire.Conn
	var err error
	if keepsHost(ref, &hreq) {
		hreq.EndMark = true
		nc, hc, err = a.hostForRun(ref, id, hreq) // hostpool.go
	} else {
		nc, hc, err = a.dialSession(ref, id, hreq)
	}
	if err != nil {
		if why := a.closedMeanwhile(ref); why != nil {
			return nil, nil, nil, why
		}
		return nil, nil, nil, wire.Errorf(wire.CodeClosed, "%v", err)
	}
	return nc, hc, ref, nil
}
