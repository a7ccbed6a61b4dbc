package mux

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// ErrRunning means another master holds the lock for the socket.
var ErrRunning = errors.New("mux: a master is already running")

// Lock is a master's claim on a socket path: an flock on PATH.lock, held
// for the master's life, so two masters never race for one socket and a
// socket left by a dead master is known to be stale.
type Lock struct {
	path string
	f    *os.File
}

// TakeLock takes the lock for the socket path (in a directory made and
// checked with MakeDir). ErrRunning when another master has it.
func TakeLock(path string) (*Lock, error) {
	if err := MakeDir(dirOf(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(strings.TrimSuffix(path, ".sock")+".lock", os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, err
	}
	return &Lock{path: path, f: f}, nil
}

// Listen removes a stale socket and listens on the path, mode 0600.
func (l *Lock) Listen() (*net.UnixListener, error) {
	os.Remove(l.path) // stale: its master is gone, or we would not hold the lock
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: l.path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(l.path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Release drops the lock.
func (l *Lock) Release() { l.f.Close() }

func dirOf(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "."
	}
	return path[:i]
}

// Master lends channels of one SSH connection.
type Master struct {
	Type    string        // the only channel type lent
	Persist time.Duration // exit after this long without a client
	// Open opens a channel of Type on the SSH connection.
	Open func() (ssh.Channel, <-chan *ssh.Request, error)
	Done <-chan struct{} // closed when the SSH connection is gone
	Info string          // what Status shows, after the pid

	mu      sync.Mutex
	active  int
	opened  int
	conns   map[*net.UnixConn]bool
	gen     int
	idle    *time.Timer
	quit    chan struct{}
	quitOne sync.Once
	why     string
	stopper []*net.UnixConn // Stop requests, answered by exiting
	start   time.Time
	spare   chan spareChannel // one channel opened ahead, so a client does not wait for the agent's round trip
	initOne sync.Once
	// refilling: a spare is being opened (mu).
	refilling bool
	// SpareAge is how long a channel opened ahead is lent; older, it is
	// closed and a fresh one opened (0: DefaultSpareAge).
	SpareAge time.Duration
	// SpareRenew is how long a spare waits unlent before it is replaced
	// by a fresh one in the background (0: DefaultSpareRenew), so that a
	// command typed after a pause does not wait for a channel's round
	// trip to the agent.
	SpareRenew time.Duration
}

// DefaultSpareAge is well under the agents' FirstRequestTimeout (10 s),
// after which an agent closes a channel that has asked nothing: a spare
// that waited longer may be dead when lent.
const DefaultSpareAge = 5 * time.Second

// DefaultSpareRenew is under DefaultSpareAge: a spare is replaced before it
// is too old to lend. It costs the agent one channel per 4 s while a master
// waits for clients (at most its Persist).
const DefaultSpareRenew = 4 * time.Second

type spareChannel struct {
	ch     ssh.Channel
	opened time.Time
}

// Serve lends channels until the master is idle for Persist, its SSH
// connection dies, or a client asks it to stop. It returns why it ended.
func (m *Master) Serve(ln *net.UnixListener) string {
	m.init()
	m.refillIfEmpty()
	m.mu.Lock()
	m.armIdle()
	m.mu.Unlock()
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				m.stop("listener: " + err.Error())
				return
			}
			m.mu.Lock()
			select {
			case <-m.quit:
				m.mu.Unlock()
				c.Close()
				continue
			default:
			}
			m.active++
			m.gen++
			m.conns[c] = true
			m.mu.Unlock()
			go m.handle(c)
		}
	}()
	select {
	case <-m.quit:
	case <-m.Done:
		m.stop("connection to the agent lost")
	}
	ln.Close() // removes the socket
	m.mu.Lock()
	for c := range m.conns {
		c.Close()
	}
	stoppers := m.stopper
	m.mu.Unlock()
	for _, c := range stoppers {
		c.Close()
	}
	select {
	case sp := <-m.spare:
		sp.ch.Close()
	default:
	}
	return m.why
}

func (m *Master) init() {
	m.initOne.Do(func() {
		m.quit = make(chan struct{})
		m.conns = map[*net.UnixConn]bool{}
		m.start = time.Now()
		m.spare = make(chan spareChannel, 1)
		if m.SpareAge <= 0 {
			m.SpareAge = DefaultSpareAge
		}
		if m.SpareRenew <= 0 {
			m.SpareRenew = DefaultSpareRenew
		}
	})
}

// refill opens the next spare channel in the background.
func (m *Master) refill() {
	go func() {
		select {
		case <-m.quit:
			return
		default:
		}
		ch, reqs, err := m.Open()
		m.mu.Lock()
		m.refilling = false
		m.mu.Unlock()
		if err != nil {
			return // the next client opens its own and sees why
		}
		go ssh.DiscardRequests(reqs)
		select {
		case <-m.quit:
			ch.Close()
			return
		default:
		}
		select {
		case m.spare <- spareChannel{ch, time.Now()}:
			time.AfterFunc(m.SpareRenew, func() { m.renew(ch) })
		default:
			ch.Close()
		}
	}()
}

// renew replaces spare ch with a fresh one if it is still waiting to be
// lent.
func (m *Master) renew(ch ssh.Channel) {
	select {
	case <-m.quit:
		return
	case sp := <-m.spare:
		if sp.ch != ch {
			select {
			case m.spare <- sp: // a newer one; keep it
			default:
				sp.ch.Close()
			}
			return
		}
		ch.Close()
		m.refillIfEmpty()
	default: // lent
	}
}

// channel returns the spare channel if it is fresh, or opens one. The
// next spare is opened when the client is done with this one (handle):
// opened at once, its round trip to the agent competed with the client's
// request for the agent and the two cores of the machine, a fresh invoke's
// critical path (#18).
func (m *Master) channel() (ssh.Channel, error) {
	select {
	case sp := <-m.spare:
		if time.Since(sp.opened) < m.SpareAge {
			return sp.ch, nil
		}
		sp.ch.Close() // the agent may have closed it already
	default:
	}
	ch, reqs, err := m.Open()
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

func (m *Master) stop(why string) {
	m.quitOne.Do(func() {
		m.why = why
		close(m.quit)
	})
}

// armIdle starts the idle timer when no client is connected (m.mu held).
func (m *Master) armIdle() {
	if m.active > 0 {
		return
	}
	gen := m.gen
	m.idle = time.AfterFunc(m.Persist, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.active == 0 && m.gen == gen {
			m.stop(fmt.Sprintf("idle for %s", m.Persist))
		}
	})
}

func (m *Master) done(c *net.UnixConn) {
	c.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conns[c] {
		delete(m.conns, c)
		m.active--
		m.gen++
		m.armIdle()
	}
}

func (m *Master) handle(c *net.UnixConn) {
	defer m.done(c)
	if checkPeer(c) != nil {
		return
	}
	r := readers.Get().(*bufio.Reader)
	r.Reset(c)
	defer func() { r.Reset(nil); readers.Put(r) }()
	f := &frameConn{c: c, r: r}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, p, err := f.readFrame()
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	switch typ {
	case fStatus:
		m.mu.Lock()
		s := fmt.Sprintf("pid %d, %s, up %s, %d channels open (%d lent so far)",
			os.Getpid(), m.Info, time.Since(m.start).Round(time.Second), m.active-1, m.opened)
		m.mu.Unlock()
		f.write(fOK, []byte(s))
	case fStop:
		// Keep this connection open until the master has gone, so `tether
		// mux stop` returns when it has.
		m.mu.Lock()
		delete(m.conns, c)
		m.active--
		m.stopper = append(m.stopper, c)
		m.mu.Unlock()
		f.write(fOK, nil)
		m.stop("asked to stop")
		<-m.quit
		// The connection is closed by Serve; done() finds it gone.
	case fOpen:
		if string(p) != m.Type {
			f.write(fFail, encodeFail(uint32(ssh.Prohibited), "channel type not lent by this master"))
			return
		}
		ch, err := m.channel()
		if err != nil {
			var oce *ssh.OpenChannelError
			if errors.As(err, &oce) {
				f.write(fFail, encodeFail(uint32(oce.Reason), oce.Message))
			}
			// Otherwise the connection is broken: the client sees the
			// socket close and dials directly.
			return
		}
		m.mu.Lock()
		m.opened++
		m.mu.Unlock()
		if f.write(fOK, nil) != nil {
			ch.Close()
			m.refillIfEmpty()
			return
		}
		splice(f, ch)
		m.refillIfEmpty()
	}
}

// refillIfEmpty opens the next spare unless one is there or on its way.
func (m *Master) refillIfEmpty() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refilling || len(m.spare) > 0 {
		return
	}
	m.refilling = true
	m.refill()
}

// readers are the buffered readers of the master's client connections
// (newFrameConn's size), used again.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// spliceBufs are splice's copy buffers: two of 32 KiB per lent channel were
// most of what a master allocated per fresh invoke.
var spliceBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// splice carries frames between the client and the SSH channel until the
// client closes (or goes) or the channel refuses writes.
func splice(f *frameConn, ch ssh.Channel) {
	defer ch.Close()
	go func() { // channel → client
		bp := spliceBufs.Get().(*[32 << 10]byte)
		defer spliceBufs.Put(bp)
		buf := bp[:]
		for {
			n, err := ch.Read(buf)
			if n > 0 {
				if f.write(fData, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				f.write(fEOF, nil)
				return
			}
		}
	}()
	bp := spliceBufs.Get().(*[32 << 10]byte)
	defer spliceBufs.Put(bp)
	buf := bp[:]
	for {
		typ, n, err := f.readHeader()
		if err != nil {
			return
		}
		switch typ {
		case fData:
			if _, err := io.CopyBuffer(ch, io.LimitReader(f.r, int64(n)), buf); err != nil {
				f.write(fClose, nil)
				return
			}
		case fEOF:
			ch.CloseWrite()
		default: // fClose, or nonsense
			return
		}
	}
}
