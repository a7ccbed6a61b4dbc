package e2e

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// CutProxy is a TCP proxy on loopback that forwards to a target and can cut
// every connection through it at once, as a network failure would.
type CutProxy struct {
	ln     net.Listener
	target string
	cuts   atomic.Int64
	bytes  atomic.Int64 // forwarded, both directions

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewCutProxy listens on 127.0.0.1 and forwards to target.
func NewCutProxy(target string) (*CutProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

// Addr is where clients connect.
func (p *CutProxy) Addr() string { return p.ln.Addr().String() }

// Carried is how many bytes the proxy forwarded, both directions.
func (p *CutProxy) Carried() int64 { return p.bytes.Load() }

// Cuts is how many cuts happened that broke at least one connection.
func (p *CutProxy) Cuts() int64 { return p.cuts.Load() }

// Close stops the proxy and cuts everything.
func (p *CutProxy) Close() {
	p.ln.Close()
	p.Cut()
}

func (p *CutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *CutProxy) pipe(dst, src net.Conn) {
	io.Copy(dst, countingReader{src, &p.bytes})
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut breaks every connection through the proxy now (a reset on both sides).
func (p *CutProxy) Cut() int {
	p.mu.Lock()
	n := len(p.conns)
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	if n > 0 {
		p.cuts.Add(1)
	}
	return n
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// CutRandomlyAfter waits until the proxy has carried more than bytes (a
// command's connection is up and its data flowing), then cuts as
// CutRandomly does.
func (p *CutProxy) CutRandomlyAfter(stop <-chan struct{}, bytes int64, min, max time.Duration) {
	for p.Carried() <= bytes {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.CutRandomly(stop, min, max)
}

// CutRandomly cuts at random intervals in [min, max) until stop is closed.
func (p *CutProxy) CutRandomly(stop <-chan struct{}, min, max time.Duration) {
	for {
		d := min + time.Duration(rand.Int64N(int64(max-min)))
		select {
		case <-stop:
			return
		case <-time.After(d):
			p.Cut()
		}
	}
}
