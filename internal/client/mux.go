package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// Mux channels (wire.OpMux): a fan-out's runs on one connection share a
// few channels, up to the agent's advertised count of sub-streams on each,
// instead of a channel per run. Under MaxSessionsPerConnection (10) a
// connection then carries 10 × 16 runs, so a 256-wide fan-out over 4 hosts
// needs 4 connections, not 26: the same sockets, packets and handshakes as
// without the cap. Each run is still a run of its own to its session host
// (its output, exit status, acks and signals): Open hands it a sub-stream
// that reads and writes as a channel would, so the follower is the same;
// when the channel breaks, each run resumes on a channel of its own.

// muxStreamBuffer bounds what one sub-stream holds unread before the
// channel's reader waits for it (and so holds up the channel's other runs,
// as a full SSH window would hold up a channel).
const muxStreamBuffer = 4 << 20

// muxChan is one mux channel of a connection.
type muxChan struct {
	c    *Conn
	wc   *wire.Conn
	ch   ssh.Channel
	subs map[uint32]*muxStream // guarded by c.muxMu
	// startMu orders the sub-streams' requests as their ids: the agent
	// takes an id that does not grow for a broken client.
	startMu sync.Mutex
	next    uint32
	active  int   // sub-streams not yet closed both ways (or being started)
	dead    error // the channel broke: no new sub-streams
}

// muxable reports whether req may run on a sub-stream of a mux channel.
func (c *Conn) muxable(req wire.Request) bool {
	return c.muxOn.Load() && c.ssh != nil && c.muxK > 0 && req.Op == wire.OpRun && req.Session != "" &&
		!req.Stdin && req.TTY == nil && !req.Detach && req.Module == "" && !req.Reuse
}

// capacity is how many runs the pool may give this connection at once (0:
// no limit): its channel cap, times the sub-streams of a mux channel when
// its runs go on mux channels.
func (c *Conn) capacity() int {
	n := c.MaxChannels()
	if n > 0 && c.muxOn.Load() && c.muxK > 0 && c.ssh != nil {
		n *= c.muxK
	}
	return n
}

// openSub starts req on a sub-stream of a mux channel with room, opening
// one when none has: as many at once as the runs waiting need.
func (c *Conn) openSub(req wire.Request) (*wire.Conn, ssh.Channel, error) {
	c.muxMu.Lock()
	c.muxWaiting++
	for {
		var m *muxChan
		for _, x := range c.muxChans {
			if x.dead == nil && x.active < c.muxK {
				m = x
				break
			}
		}
		if m != nil {
			c.muxWaiting--
			m.active++ // the place is taken; the id is given in the order of the requests
			c.muxMu.Unlock()
			m.startMu.Lock()
			c.muxMu.Lock()
			s := m.newStreamLocked()
			c.muxMu.Unlock()
			wc := wire.NewConnBuffer(s, 0, 4<<10)
			err := wc.WriteJSON(wire.TRequest, req)
			m.startMu.Unlock()
			if err != nil {
				s.Close()
				if errors.Is(err, wire.ErrFrameTooLarge) {
					return nil, nil, err
				}
				return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
			}
			return wc, s, nil
		}
		select {
		case <-c.closed:
			c.muxWaiting--
			c.muxMu.Unlock()
			return nil, nil, fmt.Errorf("%w: connection to %s closed", ErrTransport, c.shown.HostString())
		default:
		}
		if c.muxOpening*c.muxK < c.muxWaiting {
			c.muxOpening++
			c.muxMu.Unlock()
			m, err := c.openMuxChan()
			c.muxMu.Lock()
			c.muxOpening--
			if err != nil {
				c.muxWaiting--
				c.muxCond.Broadcast()
				c.muxMu.Unlock()
				return nil, nil, err
			}
			c.muxChans = append(c.muxChans, m)
			c.muxCond.Broadcast()
			continue
		}
		c.muxCond.Wait()
	}
}

// openMuxChan opens a channel (on a slot of the cap) and makes it a mux
// channel.
func (c *Conn) openMuxChan() (*muxChan, error) {
	wc, ch, err := c.openChannelRequest(wire.Request{Op: wire.OpMux, Client: wire.Client{}})
	if err != nil {
		return nil, err
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		ch.Close()
		return nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	if err := check(resp, ch, c.shown); err != nil {
		return nil, err
	}
	m := &muxChan{c: c, wc: wc, ch: ch, subs: map[uint32]*muxStream{}}
	go m.read()
	return m, nil
}

func (m *muxChan) newStreamLocked() *muxStream {
	m.next++
	s := &muxStream{m: m, id: m.next}
	s.cond = sync.NewCond(&s.mu)
	m.subs[s.id] = s
	return s
}

// read hands each sub-stream its frames until the channel ends.
func (m *muxChan) read() {
	for {
		t, p, err := m.wc.Read()
		if err == nil && t != wire.TMux {
			err = fmt.Errorf("wire: got %s message on a mux channel", t)
		}
		var id uint32
		var it wire.Type
		var inner []byte
		if err == nil {
			id, it, inner, err = wire.DecodeMux(p)
		}
		if err != nil {
			m.fail(err)
			return
		}
		m.c.muxMu.Lock()
		s := m.subs[id]
		m.c.muxMu.Unlock()
		if s == nil {
			continue
		}
		if it == wire.MuxClose {
			s.remoteClosed()
			continue
		}
		s.push(it, inner)
	}
}

// fail ends every sub-stream with the channel's error: their runs
// reconnect and resume as after a broken channel.
func (m *muxChan) fail(err error) {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	m.ch.Close()
	m.c.muxMu.Lock()
	m.dead = err
	subs := make([]*muxStream, 0, len(m.subs))
	for _, s := range m.subs {
		subs = append(subs, s)
	}
	m.c.muxChans = deleteChan(m.c.muxChans, m)
	m.c.muxCond.Broadcast()
	m.c.muxMu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		s.err = err
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

func deleteChan(list []*muxChan, m *muxChan) []*muxChan {
	for i, x := range list {
		if x == m {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// closeIdleMux closes one mux channel that runs nothing, freeing its slot
// of the cap for another channel; it reports whether it found one.
func (c *Conn) closeIdleMux() bool {
	c.muxMu.Lock()
	var idle *muxChan
	for _, m := range c.muxChans {
		if m.active == 0 {
			idle = m
			break
		}
	}
	if idle != nil {
		c.muxChans = deleteChan(c.muxChans, idle)
		idle.dead = errors.New("closed while idle")
	}
	c.muxMu.Unlock()
	if idle != nil {
		idle.ch.Close()
	}
	return idle != nil
}

// muxStream is one run on a mux channel. It reads and writes the run's
// frames as its own channel would (ssh.Channel), so a follower uses it as
// one.
type muxStream struct {
	m  *muxChan
	id uint32

	mu         sync.Mutex
	cond       *sync.Cond
	buf        []byte // the agent's frames for this run, re-framed, not yet read
	remoteDone bool   // the agent's MuxClose arrived
	localDone  bool   // Close began: no more reads or writes
	closeSent  bool   // Close has written our MuxClose (or the channel broke)
	err        error  // the channel broke
	wbuf       []byte // a frame written in parts
}

func (s *muxStream) push(t wire.Type, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) > muxStreamBuffer && !s.localDone && s.err == nil {
		s.cond.Wait()
	}
	if s.localDone {
		return // nobody reads it any more
	}
	s.buf = binary.BigEndian.AppendUint32(s.buf, uint32(1+len(p)))
	s.buf = append(append(s.buf, byte(t)), p...)
	s.cond.Broadcast()
}

func (s *muxStream) remoteClosed() {
	s.mu.Lock()
	s.remoteDone = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.release()
}

// release forgets the sub-stream once both sides closed it; its place on
// the channel is free then (the agent, reading this side's close before
// any later request, has freed it too). Only once our MuxClose is written:
// a place freed when the agent's close arrived while Close was still
// writing ours let the next run's request overtake it, and the agent,
// still counting this run, refused that one as a 17th.
func (s *muxStream) release() {
	s.mu.Lock()
	both := s.remoteDone && s.closeSent
	s.mu.Unlock()
	if !both {
		return
	}
	c := s.m.c
	c.muxMu.Lock()
	if s.m.subs[s.id] == s {
		delete(s.m.subs, s.id)
		s.m.active--
		c.muxCond.Broadcast()
	}
	c.muxMu.Unlock()
}

func (s *muxStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) == 0 && !s.remoteDone && !s.localDone && s.err == nil {
		s.cond.Wait()
	}
	if len(s.buf) > 0 && !s.localDone {
		n := copy(p, s.buf)
		s.buf = s.buf[n:]
		if len(s.buf) == 0 {
			s.buf = nil
		}
		s.cond.Broadcast()
		return n, nil
	}
	if s.err != nil {
		return 0, s.err
	}
	return 0, io.EOF
}

// Write takes whole frames (wire.Conn writes one per call) and sends each
// inside a TMux frame.
func (s *muxStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.localDone {
		s.mu.Unlock()
		return 0, io.EOF
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	s.wbuf = append(s.wbuf, p...)
	var frames [][]byte
	for len(s.wbuf) >= 5 {
		n := int(binary.BigEndian.Uint32(s.wbuf))
		if n == 0 || len(s.wbuf) < 4+n {
			break
		}
		frames = append(frames, s.wbuf[4:4+n])
		s.wbuf = s.wbuf[4+n:]
	}
	if len(s.wbuf) == 0 {
		s.wbuf = nil
	}
	s.mu.Unlock()
	for _, f := range frames {
		if err := s.m.wc.WriteMux(s.id, wire.Type(f[0]), f[1:]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close ends the run's side of the sub-stream, as closing its channel would.
func (s *muxStream) Close() error {
	s.mu.Lock()
	if s.localDone {
		s.mu.Unlock()
		return nil
	}
	s.localDone = true
	s.buf = nil
	dead := s.err != nil
	s.cond.Broadcast()
	s.mu.Unlock()
	if !dead {
		s.m.wc.WriteMux(s.id, wire.MuxClose, nil)
	}
	s.mu.Lock()
	s.closeSent = true
	s.mu.Unlock()
	s.release()
	return nil
}

func (s *muxStream) CloseWrite() error { return s.Close() }

func (s *muxStream) SendRequest(string, bool, []byte) (bool, error) { return false, nil }

func (s *muxStream) Stderr() io.ReadWriter { return nil }
