package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/tstest"
	"github.com/tether-sh/tether/internal/wire"
)

// countingDialer counts the TCP connections made to each address.
type countingDialer struct {
	mu    sync.Mutex
	dials map[string]int
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	c.dials[addr]++
	c.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (c *countingDialer) count(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials[addr]
}

// startCappedAgents starts n agents in the test process whose policy sets
// MaxSessionsPerConnection to maxSessions, all trusting one key, and
// returns their addresses and a Dialer that counts its dials.
func startCappedAgents(t *testing.T, n, maxSessions int) ([]string, *Dialer, *countingDialer) {
	t.Helper()
	addrs, d := inProcessAgents(t, n, fmt.Sprintf("MaxSessionsPerConnection = %d\n", maxSessions))
	cd := &countingDialer{dials: map[string]int{}}
	d.Client.ID = "pool-test"
	d.DialNet = cd.DialContext
	return addrs, d, cd
}

// held runs Pool.Each over targets and holds every call until release is
// closed (or its host's channel in hostRelease, when there is one); it
// reports the calls running per host.
type held struct {
	mu          sync.Mutex
	running     map[string]int
	order       []int
	errs        map[int]error
	release     chan struct{}
	hostRelease map[string]chan struct{}
}

func (h *held) fn(targets []Target) func(i int, c *Conn, err error) {
	return func(i int, c *Conn, err error) {
		h.mu.Lock()
		h.order = append(h.order, i)
		if err != nil {
			h.errs[i] = err
			h.mu.Unlock()
			return
		}
		if c == nil || c.Target.HostPort() != targets[i].HostPort() {
			h.mu.Unlock()
			panic(fmt.Sprintf("target %d (%s) got a connection to %v", i, targets[i], c))
		}
		h.running[targets[i].HostPort()]++
		release := h.release
		if r, ok := h.hostRelease[targets[i].HostPort()]; ok {
			release = r
		}
		h.mu.Unlock()
		<-release
		h.mu.Lock()
		h.running[targets[i].HostPort()]--
		h.mu.Unlock()
	}
}

// ran is how many calls fn was given (started or failed).
func (h *held) ran() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.order)
}

func (h *held) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.running {
		n += r
	}
	return n
}

func newHeld() *held {
	return &held{running: map[string]int{}, errs: map[int]error{}, release: make(chan struct{})}
}

func targetsOn(t *testing.T, addr string, n int) []Target {
	var out []Target
	for i := range n {
		tg, err := ParseTarget(fmt.Sprintf("%s/s%d", addr, i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tg)
	}
	return out
}

// TestPoolEachSpreadsConnectionsOverHosts: 8 targets on each of two agents
// that allow 2 channels per connection, listed host by host, with a
// throttle of 8. The throttle's places must go to both hosts at once (4
// each: 2 connections each, 4 dials) — not all 8 to the first host's
// targets, which made 4 connections to it and then 4 to the second (the
// fan-out before: Each with Acquire inside, ~90 connections for figure 12's
// 256-wide fan-out over 4 agents under the default cap of 10 instead of ~28).
//
// Then the second host's calls end while the first host's still run: its
// other 4 targets take its freed slots (no dial), and once it has nothing
// left the 4 free places go to the first host's waiting targets on 2 new
// connections to it — exactly 2, as many as the places need. (The test
// once released both hosts at once and allowed "one more dial": how many
// the first host got then depended on which calls the pool saw end first.)
func TestPoolEachSpreadsConnectionsOverHosts(t *testing.T) {
	addrs, d, cd := startCappedAgents(t, 2, 2)
	targets := append(targetsOn(t, addrs[0], 8), targetsOn(t, addrs[1], 8)...)
	h := newHeld()
	first, second := make(chan struct{}), make(chan struct{})
	h.hostRelease = map[string]chan struct{}{targets[0].HostPort(): first, targets[8].HostPort(): second}
	p := NewPool(d)
	defer p.Close()
	done := make(chan struct{})
	go func() {
		p.Each(context.Background(), targets, 8, h.fn(targets))
		close(done)
	}()
	tstest.WaitFor(t, 30*time.Second, "8 calls running", func() bool { return h.total() == 8 })
	h.mu.Lock()
	r0, r1 := h.running[addrs[0]], h.running[addrs[1]]
	h.mu.Unlock()
	if r0 != 4 || r1 != 4 {
		t.Errorf("running per host %d and %d, want 4 and 4 (the throttle's places shared by the hosts)", r0, r1)
	}
	if a, b := cd.count(addrs[0]), cd.count(addrs[1]); a != 2 || b != 2 {
		t.Errorf("dials per host %d and %d while 8 ran, want 2 and 2 (4 channels each, 2 per connection)", a, b)
	}

	close(second)
	tstest.WaitFor(t, 30*time.Second, "the first host's 8 calls running, the second's all given out", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.running[addrs[0]] == 8 && h.running[addrs[1]] == 0 && len(h.order) == 16
	})
	if a, b := cd.count(addrs[0]), cd.count(addrs[1]); a != 4 || b != 2 {
		t.Errorf("dials per host %d and %d once the second host was done, want 4 and 2 (its slots reused; 2 more connections to the first for its 4 waiting targets)", a, b)
	}

	close(first)
	<-done
	if a, b := cd.count(addrs[0]), cd.count(addrs[1]); a != 4 || b != 2 {
		t.Errorf("dials per host %d and %d for the whole fan-out, want 4 and 2", a, b)
	}
	if h.ran() != len(targets) || len(h.errs) != 0 {
		t.Errorf("%d calls, errors %v; want %d calls, no error", h.ran(), h.errs, len(targets))
	}
}

// TestPoolEachKeepsOrder: with a throttle of 1 the targets run one after
// the other in the order given, across hosts (a rolling change relies on
// it), and every target runs once.
func TestPoolEachKeepsOrder(t *testing.T) {
	addrs, d, _ := startCappedAgents(t, 2, 2)
	var targets []Target
	for i := range 6 {
		targets = append(targets, targetsOn(t, addrs[i%2], 1)...)
	}
	h := newHeld()
	close(h.release)
	p := NewPool(d)
	defer p.Close()
	p.Each(context.Background(), targets, 1, h.fn(targets))
	if fmt.Sprint(h.order) != "[0 1 2 3 4 5]" || len(h.errs) != 0 {
		t.Errorf("order %v, errors %v; want [0 1 2 3 4 5], none", h.order, h.errs)
	}
}

// TestPoolEachUnreachableHost: the targets of a host that refuses
// connections get its dial error, once each and without holding up the
// targets of a host that answers; the dead host is dialled once.
func TestPoolEachUnreachableHost(t *testing.T) {
	addrs, d, cd := startCappedAgents(t, 1, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now: connect is refused
	targets := append(targetsOn(t, dead, 5), targetsOn(t, addrs[0], 5)...)
	h := newHeld()
	close(h.release)
	p := NewPool(d)
	defer p.Close()
	p.Each(context.Background(), targets, 4, h.fn(targets))
	for i := range 5 {
		if !errors.Is(h.errs[i], ErrConnect) {
			t.Errorf("target %d on the dead host: %v, want ErrConnect", i, h.errs[i])
		}
	}
	if len(h.order) != 10 || len(h.errs) != 5 {
		t.Errorf("%d calls with %d errors, want 10 with 5", len(h.order), len(h.errs))
	}
	if n := cd.count(dead); n != 1 {
		t.Errorf("the dead host was dialled %d times, want 1", n)
	}
}

// trackedConn records its Close.
type trackedConn struct {
	net.Conn
	closed *atomic.Int32
	once   sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.Conn.Close()
}

// TestPoolCloseClosesLateDial: Each may return while a connection it asked
// for is still being dialled (its targets found slots on the first one);
// Close must close that connection too when it arrives, or it stays open
// for good (seen as an agent that could not stop: its Serve waited for it).
func TestPoolCloseClosesLateDial(t *testing.T) {
	addrs, d, _ := startCappedAgents(t, 1, 2)
	var dials, closed atomic.Int32
	gate := make(chan struct{})
	var mu sync.Mutex
	var all []net.Conn
	t.Cleanup(func() { // before the agents' cleanup, which waits for their connections
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range all {
			nc.Close()
		}
	})
	d.DialNet = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 2 {
			<-gate // the second connection arrives after the fan-out ended
		}
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		all = append(all, nc)
		mu.Unlock()
		return &trackedConn{Conn: nc, closed: &closed}, nil
	}
	targets := targetsOn(t, addrs[0], 4)
	h := newHeld()
	close(h.release)
	p := NewPool(d)
	p.Each(context.Background(), targets, 4, h.fn(targets))
	if len(h.order) != 4 || len(h.errs) != 0 {
		t.Fatalf("%d calls, errors %v; want 4, none", len(h.order), h.errs)
	}
	tstest.WaitFor(t, 10*time.Second, "the second dial to start", func() bool { return dials.Load() == 2 })
	p.Close()
	close(gate)
	tstest.WaitFor(t, 10*time.Second, "both connections closed", func() bool { return closed.Load() == 2 })
}

// TestOpenRetriesCapRefusalWhileSlotFree: the agent frees a channel's slot
// only when the client's close reaches it, and refuses a new channel over
// MaxSessionsPerConnection after a grace of 1 s; on a loaded host the
// client's next open (its own count already free) can come back refused
// (TestCpResumesAfterCut's rare restart from zero). Open must retry that
// refusal until the agent's slot frees, not fail the request. The lag is
// made here by a raw channel that holds the agent's only slot while the
// client's count says two are free.
func TestOpenRetriesCapRefusalWhileSlotFree(t *testing.T) {
	addrs, d, _ := startCappedAgents(t, 1, 1)
	tg, err := ParseTarget(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.MaxChannels() != 1 {
		t.Fatalf("MaxChannels %d, want the agent's 1", c.MaxChannels())
	}
	c.slots = make(chan struct{}, 2) // the client's count: a slot free
	hold, reqs, err := c.ssh.OpenChannel(ChannelType, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	var refusals atomic.Int32
	capRefused = func() {
		if refusals.Add(1) == 1 {
			hold.Close() // the agent's slot frees once this reaches it
		}
	}
	t.Cleanup(func() { capRefused = nil })
	resp, err := c.Call(context.Background(), wire.Request{Op: wire.OpConfigGet, Key: "IdleTimeout", Client: d.Client})
	if err != nil {
		t.Fatalf("request after a refusal for the cap: %v (refusals seen %d)", err, refusals.Load())
	}
	if refusals.Load() == 0 {
		t.Fatal("the agent never refused the second channel: the test made no lag")
	}
	if resp.Error != nil {
		t.Fatalf("config.get: %v", resp.Error)
	}
}
