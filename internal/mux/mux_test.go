package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/tstest"
)

// fakeChannel is one end of a socket pair standing in for an SSH channel;
// the test holds the other end as the agent.
type fakeChannel struct{ *net.UnixConn }

func (f fakeChannel) SendRequest(string, bool, []byte) (bool, error) { return false, nil }
func (f fakeChannel) Stderr() io.ReadWriter                          { return nil }

func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			panic(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

type testMaster struct {
	m      *Master
	path   string
	agents chan *net.UnixConn
	done   chan struct{}
	lost   func() // closes done
	ended  chan string
	over   chan struct{}
}

func startMaster(t *testing.T, persist time.Duration, refuse bool, opts ...func(*Master)) *testMaster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mux")
	path := SocketPath(dir, "u@h:1")
	lk, err := TakeLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TakeLock(path); !errors.Is(err, ErrRunning) {
		t.Fatalf("second lock: %v, want ErrRunning", err)
	}
	ln, err := lk.Listen()
	if err != nil {
		t.Fatal(err)
	}
	tm := &testMaster{path: path, agents: make(chan *net.UnixConn, 16), done: make(chan struct{}), ended: make(chan string, 1), over: make(chan struct{})}
	tm.lost = sync.OnceFunc(func() { close(tm.done) })
	tm.m = &Master{
		Type: "t@x", Persist: persist, Done: tm.done, Info: "test",
		Open: func() (ssh.Channel, <-chan *ssh.Request, error) {
			if refuse {
				return nil, nil, &ssh.OpenChannelError{Reason: ssh.ResourceShortage, Message: "too many on %HOST%"}
			}
			a, b := socketPair(t)
			tm.agents <- b
			return fakeChannel{a}, make(chan *ssh.Request), nil
		},
	}
	for _, o := range opts {
		o(tm.m)
	}
	go func() {
		tm.ended <- tm.m.Serve(ln)
		lk.Release()
		close(tm.over)
	}()
	t.Cleanup(func() {
		tm.lost()
		<-tm.over
	})
	if !refuse {
		// The master opens a spare channel ahead; wait for it, so the
		// first agent end queued is the one the first client gets.
		tm.m.init()
		tstest.WaitFor(t, 10*time.Second, "the master's spare channel", func() bool { return len(tm.m.spare) > 0 })
	}
	return tm
}

func TestChannelBothWaysWithHalfClose(t *testing.T) {
	tm := startMaster(t, time.Minute, false)
	fi, err := os.Stat(tm.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	if fi, _ := os.Stat(filepath.Dir(tm.path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode())
	}
	ch, err := Open(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	agent := <-tm.agents
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // several frames
	go func() {
		ch.Write(big)
		ch.CloseWrite()
	}()
	got, err := io.ReadAll(agent)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("agent got %d bytes (%v), want %d", len(got), err, len(big))
	}
	// After the client's EOF the agent still sends; then its EOF.
	go func() {
		agent.Write([]byte("reply"))
		agent.CloseWrite()
	}()
	back, err := io.ReadAll(ch)
	if err != nil || string(back) != "reply" {
		t.Fatalf("client got %q, %v", back, err)
	}
	ch.Close()
	// The client's close closes the channel at the agent.
	agent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := agent.Read(make([]byte, 1)); err == nil {
		t.Fatalf("agent read %d bytes after close", n)
	}
	s, err := Status(tm.path)
	if err != nil || !strings.Contains(s, "test") || !strings.Contains(s, "1 lent") {
		t.Fatalf("status %q, %v", s, err)
	}
}

func TestCloseWithoutHalfCloseReachesAgent(t *testing.T) {
	tm := startMaster(t, time.Minute, false)
	ch, err := Open(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	agent := <-tm.agents
	ch.Write([]byte("x"))
	ch.Close()
	b, _ := io.ReadAll(agent)
	if string(b) != "x" {
		t.Fatalf("agent got %q", b)
	}
}

func TestRefusalsAndWrongType(t *testing.T) {
	tm := startMaster(t, time.Minute, true)
	_, err := Open(tm.path, "t@x", 10*time.Second)
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Reason != uint32(ssh.ResourceShortage) || oe.Message != "too many on %HOST%" {
		t.Fatalf("open: %v", err)
	}
	if _, err := Open(tm.path, "session", 10*time.Second); !errors.As(err, &oe) || oe.Reason != uint32(ssh.Prohibited) {
		t.Fatalf("wrong type: %v", err)
	}
}

func TestNoMaster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mux")
	if err := MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	path := SocketPath(dir, "u@h:1")
	if _, err := Open(path, "t@x", 10*time.Second); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("open without master: %v", err)
	}
	if _, err := Status(path); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("status without master: %v", err)
	}
	long := filepath.Join(dir, strings.Repeat("x", MaxPath)+".sock")
	if _, err := Open(long, "t@x", 10*time.Second); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("open on a too long path: %v", err)
	}
	// A directory others can reach is refused even with a master in it.
	tm := startMaster(t, time.Minute, false)
	os.Chmod(filepath.Dir(tm.path), 0o755)
	if _, err := Open(tm.path, "t@x", 10*time.Second); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("open in a 0755 dir: %v", err)
	}
	os.Chmod(filepath.Dir(tm.path), 0o700)
	if _, err := Open(tm.path, "t@x", 10*time.Second); err != nil {
		t.Fatalf("open: %v", err)
	}
}

func TestStopIdleAndConnectionLoss(t *testing.T) {
	// Stop: returns once the master has gone; the socket is removed.
	tm := startMaster(t, time.Minute, false)
	ch, err := Open(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := Stop(tm.path); err != nil {
		t.Fatal(err)
	}
	if why := <-tm.ended; why != "asked to stop" {
		t.Fatalf("ended: %q", why)
	}
	if _, err := os.Stat(tm.path); !os.IsNotExist(err) {
		t.Fatalf("socket after stop: %v", err)
	}
	// The open channel ended with the master.
	if _, err := io.ReadAll(ch); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Write([]byte("x")); err == nil {
		t.Fatal("write after the master stopped")
	}

	// Idle: no client for Persist.
	tm = startMaster(t, 50*time.Millisecond, false)
	if why := <-tm.ended; !strings.HasPrefix(why, "idle") {
		t.Fatalf("ended: %q", why)
	}

	// Connection loss.
	tm = startMaster(t, time.Minute, false)
	ch, err = Open(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tm.lost()
	if why := <-tm.ended; why != "connection to the agent lost" {
		t.Fatalf("ended: %q", why)
	}
	if _, err := io.ReadAll(ch); err != nil {
		t.Fatal(err)
	}
}

// TestStaleSpareIsNotLent: a channel opened ahead that waited longer than
// SpareAge (an agent closes a channel that asks nothing within its
// FirstRequestTimeout) is closed, and the client gets a fresh one.
func TestStaleSpareIsNotLent(t *testing.T) {
	tm := startMaster(t, time.Minute, false, func(m *Master) { m.SpareAge, m.SpareRenew = time.Nanosecond, time.Hour })
	stale := <-tm.agents // the spare, stale at once
	ch, err := Open(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	stale.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := stale.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the stale spare is still open (read %d bytes)", n)
	}
	go ch.Write([]byte("fresh"))
	// The channel opened for the client comes next (the refill after it).
	agent := <-tm.agents
	agent.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 5)
	if _, err := io.ReadFull(agent, b); err != nil || string(b) != "fresh" {
		t.Fatalf("the fresh channel got %q, %v", b, err)
	}
}

// TestSpareIsRenewedWhileWaiting: a spare nobody borrows is closed and
// replaced by a fresh one before it is too old to lend, with no client
// asking; a client after the pause is served.
func TestSpareIsRenewedWhileWaiting(t *testing.T) {
	tm := startMaster(t, time.Minute, false, func(m *Master) { m.SpareAge, m.SpareRenew = time.Minute, 20*time.Millisecond })
	first := <-tm.agents
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := first.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the first spare after SpareRenew: read %d bytes, %v; want it closed (EOF)", n, err)
	}
	// Renewals go on until a client takes one; the one it took carries
	// its bytes, the others are closed.
	got := make(chan string, 64)
	watch := func(a *net.UnixConn) {
		a.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 5)
		n, _ := io.ReadFull(a, b)
		got <- string(b[:n])
	}
	select {
	case a := <-tm.agents:
		go watch(a)
	case <-time.After(10 * time.Second):
		t.Fatal("no fresh spare opened after the first was closed")
	}
	ch, err := Open(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	go ch.Write([]byte("after"))
	for {
		select {
		case a := <-tm.agents:
			go watch(a)
		case s := <-got:
			if s == "after" {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the client's bytes reached none of the agent's channels")
		}
	}
}

// A pending channel's first bytes, sent before the answer, reach the agent
// after the OK and before anything written later; a refusal drops them.
func TestPendingSendsFirstWithTheRequest(t *testing.T) {
	tm := startMaster(t, time.Minute, false)
	p, err := Start(tm.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := p.Finish([]byte("hello+request"))
	if err != nil {
		t.Fatal(err)
	}
	agent := <-tm.agents
	ch.Write([]byte("|ack"))
	ch.CloseWrite()
	if got, _ := io.ReadAll(agent); string(got) != "hello+request|ack" {
		t.Fatalf("agent got %q", got)
	}
	ch.Close()

	refusing := startMaster(t, time.Minute, true)
	p, err = Start(refusing.path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var oe *OpenError
	if _, err := p.Finish([]byte("never sent")); !errors.As(err, &oe) {
		t.Fatalf("refused: %v", err)
	}
}

// A master that closes without answering (exiting, its connection lost)
// forwarded nothing: Finish says ErrNoMaster, so the caller dials
// directly and sends the request there once.
func TestPendingUnansweredIsNoMaster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mux")
	if err := MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	path := SocketPath(dir, "u@h:1")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		newFrameConn(c).readFrame() // the Open, then the master goes
		c.Close()
	}()
	p, err := Start(path, "t@x", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Finish([]byte("request")); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("unanswered: %v, want ErrNoMaster", err)
	}
	if _, err := Start(path+".none", "t@x", time.Second); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("no socket: %v", err)
	}
}

// A master that has not answered when the wait runs out, or answered only
// in part, may forward the request later (or did): Finish says
// ErrNoAnswer, never ErrNoMaster, so the caller does not send it again on
// a direct connection — the command would run twice.
func TestPendingLateOrPartialAnswerIsNotNoMaster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mux")
	if err := MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		answer func(c *net.UnixConn) // after reading the Open
	}{
		{"late", func(c *net.UnixConn) { io.Copy(io.Discard, c) }},     // holds on, answers nothing
		{"partial", func(c *net.UnixConn) { c.Write([]byte{fOK, 0}) }}, // two bytes of a header, then gone
		{"unexpected", func(c *net.UnixConn) { newFrameConn(c).write(fEOF, nil) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := SocketPath(dir, "u@"+c.name+":1")
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				mc, err := ln.AcceptUnix()
				if err != nil {
					return
				}
				defer mc.Close()
				newFrameConn(mc).readFrame()
				c.answer(mc)
			}()
			p, err := Start(path, "t@x", 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Finish([]byte("request"))
			if !errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrNoMaster) {
				t.Fatalf("Finish: %v, want ErrNoAnswer", err)
			}
			<-done
		})
	}
}
