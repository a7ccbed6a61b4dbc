package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/wire"
)

// Mux channels (mux.go, wire.OpMux) against agents in the test process,
// with real session hosts.

// muxSessions makes n builtin sessions m1..mn on addr, each with x set to
// its name, and returns their targets.
func muxSessions(t *testing.T, d *Dialer, addr string, n int) []Target {
	t.Helper()
	var out []Target
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("m%d", i)
		tg, err := ParseTarget(addr + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if resp := call(t, d, tg, wire.Request{Op: opNew, Session: name, Shell: "builtin", Client: d.Client}); !resp.OK {
			t.Fatalf("new %s: %+v", name, resp.Error)
		}
		res, err := d.Run(context.Background(), nil, RunSpec{Target: tg, Request: wire.Request{Command: "x=" + name}})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("set x in %s: %v, exit %d", name, err, res.ExitCode)
		}
		out = append(out, tg)
	}
	return out
}

// TestFanOutMuxKeepsEachTargetsResult: 12 sessions on an agent that allows
// 2 channels per connection, run at once (throttle 13) with one more
// target naming a session that does not exist. Every target gets its own
// output and exit status (the length of its name), the missing one its own
// not-found error, and the whole fan-out takes one connection: its runs
// share mux channels (without them, 13 runs under a cap of 2 dial 7).
func TestFanOutMuxKeepsEachTargetsResult(t *testing.T) {
	addrs, d, cd := startCappedAgents(t, 1, 2)
	targets := muxSessions(t, d, addrs[0], 12)
	missing, _ := ParseTarget(addrs[0] + "/nosuch")
	targets = append(targets[:6], append([]Target{missing}, targets[6:]...)...)
	before := cd.count(addrs[0])
	f := &FanOut{Dialer: d, Throttle: len(targets), Fold: true}
	results := f.Invoke(context.Background(), targets, wire.Request{Command: `echo "out $x"; echo "err $x" >&2; exit ${#x}`}, nil)
	for i, r := range results {
		name := targets[i].Session
		if name == "nosuch" {
			if !errors.Is(r.Err, ErrNotFound) || r.ExitCode != 255 {
				t.Errorf("%s: err %v, exit %d; want ErrNotFound, 255", name, r.Err, r.ExitCode)
			}
			continue
		}
		if r.Err != nil || r.ExitCode != len(name) || string(r.Stdout) != "out "+name+"\n" || string(r.Stderr) != "err "+name+"\n" {
			t.Errorf("%s: err %v, exit %d, stdout %q, stderr %q; want exit %d and its own lines",
				name, r.Err, r.ExitCode, r.Stdout, r.Stderr, len(name))
		}
	}
	if n := cd.count(addrs[0]) - before; n != 1 {
		t.Errorf("the fan-out dialled %d connections, want 1 (13 runs on mux channels within a cap of 2 channels)", n)
	}
}

// TestFanOutMuxResumesAfterCut: the connection carrying a mux channel is
// cut while its 4 runs are in the middle of their commands. Each run
// resumes on a connection of its own and delivers every line once, with
// its own exit status.
func TestFanOutMuxResumesAfterCut(t *testing.T) {
	addrs, d, _ := startCappedAgents(t, 1, 2)
	targets := muxSessions(t, d, addrs[0], 4)
	cuts := &cutDialer{}
	d.DialNet = cuts.DialContext
	gate := filepath.Join(e2e.ShortTempDir(t), "gate")
	var mu sync.Mutex
	var out strings.Builder
	firsts := 0
	cutDone := make(chan struct{})
	stdout := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		out.Write(p)
		if n := strings.Count(string(p), ": one "); n > 0 && firsts < 4 && firsts+n >= 4 {
			cuts.cut() // all 4 wait at the gate now
			close(cutDone)
		}
		firsts += strings.Count(string(p), ": one ")
		return len(p), nil
	})
	go func() {
		<-cutDone
		os.WriteFile(gate, nil, 0o644)
	}()
	f := &FanOut{Dialer: d, Throttle: 4, Stdout: stdout, Stderr: stdout, ReconnectTimeout: time.Minute}
	cmd := fmt.Sprintf(`echo "one $x"; while ! test -e %s; do sleep 0.05; done; echo "two $x"; exit ${#x}`, gate)
	results := f.Invoke(context.Background(), targets, wire.Request{Command: cmd}, nil)
	if cuts.dials() < 2 {
		t.Fatalf("%d dials: the cut made no run reconnect", cuts.dials())
	}
	got := out.String()
	for i, r := range results {
		name := targets[i].Session
		if r.Err != nil || r.ExitCode != len(name) {
			t.Errorf("%s: err %v, exit %d; want exit %d", name, r.Err, r.ExitCode, len(name))
		}
		for _, line := range []string{"one", "two"} {
			want := fmt.Sprintf("%s: %s %s\n", targets[i], line, name)
			if n := strings.Count(got, want); n != 1 {
				t.Errorf("%q %d times in the output, want once:\n%s", want, n, got)
			}
		}
	}
}

// rawMux opens a mux channel on a connection of its own.
func rawMux(t *testing.T, d *Dialer, addr string) (*Conn, *wire.Conn) {
	t.Helper()
	tg, _ := ParseTarget(addr)
	c, err := d.Dial(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.muxK != wire.MaxMuxStreams {
		t.Fatalf("the agent advertises %d sub-streams per mux channel, want %d", c.muxK, wire.MaxMuxStreams)
	}
	wc, ch, err := c.openChannelRequest(wire.Request{Op: wire.OpMux})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
		t.Fatalf("mux: %v %+v", err, resp.Error)
	}
	return c, wc
}

func writeSub(t *testing.T, wc *wire.Conn, id uint32, req wire.Request) {
	t.Helper()
	b, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.WriteMux(id, wire.TRequest, b); err != nil {
		t.Fatal(err)
	}
}

// readSubResponse reads mux frames until sub-stream id's Response.
func readSubResponse(t *testing.T, wc *wire.Conn, id uint32) wire.Response {
	t.Helper()
	for {
		typ, p, err := wc.Read()
		if err != nil {
			t.Fatalf("waiting for sub-stream %d's response: %v", id, err)
		}
		sid, it, inner, err := wire.DecodeMux(p)
		if typ != wire.TMux || err != nil {
			t.Fatalf("frame %s on a mux channel (%v)", typ, err)
		}
		if sid == id && it == wire.TResponse {
			var resp wire.Response
			if err := wire.DecodeJSON(it, inner, &resp); err != nil {
				t.Fatal(err)
			}
			return resp
		}
	}
}

// TestMuxChannelLimits: the agent runs at most MaxMuxStreams sub-streams on
// one mux channel (the 17th run is refused with a limit error while 16
// run), only plain runs of named sessions (stdin, a module or a bare host
// are refused), and closes a channel whose sub-stream ids do not grow.
func TestMuxChannelLimits(t *testing.T) {
	addrs, d, _ := startCappedAgents(t, 1, 2)
	targets := muxSessions(t, d, addrs[0], 1)
	_, wc := rawMux(t, d, addrs[0])
	gate := filepath.Join(e2e.ShortTempDir(t), "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) })
	hold := wire.Request{Op: wire.OpRun, Session: targets[0].Session, Client: d.Client,
		Command: fmt.Sprintf("while ! test -e %s; do sleep 0.05; done", gate)}
	// One session runs one command at a time: the other 15 runs are
	// refused by the session host as busy, and still count — a run
	// counts from its request until both sides closed it.
	for id := uint32(1); id <= wire.MaxMuxStreams; id++ {
		writeSub(t, wc, id, hold)
	}
	writeSub(t, wc, wire.MaxMuxStreams+1, hold)
	resp := readSubResponse(t, wc, wire.MaxMuxStreams+1)
	if resp.OK || resp.Error == nil || resp.Error.Code != wire.CodeLimit {
		t.Fatalf("the 17th run on a mux channel: %+v, want a limit refusal", resp.Error)
	}
	for _, bad := range []wire.Request{
		{Op: wire.OpRun, Session: targets[0].Session, Stdin: true, Command: "cat"},
		{Op: wire.OpRun, Command: "true"},
		{Op: wire.OpStatus, Session: targets[0].Session},
		{Op: wire.OpRun, Session: "../x", Command: "true"},
	} {
		_, wc := rawMux(t, d, addrs[0])
		writeSub(t, wc, 1, bad)
		if resp := readSubResponse(t, wc, 1); resp.OK || resp.Error == nil || resp.Error.Code != wire.CodeBadRequest {
			t.Errorf("%+v on a mux channel: %+v, want a bad-request refusal", bad, resp.Error)
		}
	}
	// Frames a plain run's client never sends (stdin, or a large one)
	// close the channel: they would wait in the root agent's inboxes
	// while a stopped session host does not read them.
	for _, f := range []struct {
		typ  wire.Type
		body []byte
	}{{wire.TStdin, make([]byte, 16)}, {wire.TSignal, make([]byte, 4<<10)}} {
		_, wc := rawMux(t, d, addrs[0])
		writeSub(t, wc, 1, wire.Request{Op: wire.OpRun, Session: "nosuch", Command: "true"})
		if err := wc.WriteMux(1, f.typ, f.body); err != nil {
			t.Fatal(err)
		}
		for { // the agent closes the channel: Read ends (the test's timeout if not)
			if _, _, err := wc.Read(); err != nil {
				break
			}
		}
	}
	_, wc = rawMux(t, d, addrs[0])
	writeSub(t, wc, 5, wire.Request{Op: wire.OpRun, Session: "nosuch", Command: "true"})
	readSubResponse(t, wc, 5)
	writeSub(t, wc, 5, wire.Request{Op: wire.OpRun, Session: "nosuch", Command: "true"})
	for { // the agent closes the channel: Read ends (the test's timeout if not)
		if _, _, err := wc.Read(); err != nil {
			break
		}
	}
}

// TestMuxPlaceFreedOnlyAfterOurClose: a sub-stream's place on its channel
// is free only once this side's MuxClose is written. The agent's close may
// arrive while Close is still writing ours; freeing the place then let the
// next run's request reach the agent before our close, and the agent, still
// counting the old run, refused the new one as a 17th (a 1,000-target
// fan-out lost 2-3 targets to "16 runs already on this mux channel").
func TestMuxPlaceFreedOnlyAfterOurClose(t *testing.T) {
	ours, agent := net.Pipe() // a write waits until the agent's side reads it
	defer ours.Close()
	defer agent.Close()
	c := &Conn{muxK: wire.MaxMuxStreams}
	c.muxCond = sync.NewCond(&c.muxMu)
	m := &muxChan{c: c, wc: wire.NewConn(ours, 0), subs: map[uint32]*muxStream{}}
	c.muxMu.Lock()
	m.active++
	s := m.newStreamLocked()
	c.muxMu.Unlock()
	active := func() int {
		c.muxMu.Lock()
		defer c.muxMu.Unlock()
		return m.active
	}

	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	// Close has begun and waits in its MuxClose write; the agent's close
	// arrives meanwhile.
	e2e.WaitFor(t, 10*time.Second, "Close to begin", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.localDone
	})
	s.remoteClosed()
	if n := active(); n != 1 {
		t.Fatalf("the place was freed (active %d) before our MuxClose was written", n)
	}
	aw := wire.NewConn(agent, 0)
	typ, p, err := aw.Read()
	if err != nil {
		t.Fatal(err)
	}
	if id, it, _, err := wire.DecodeMux(p); err != nil || typ != wire.TMux || id != s.id || it != wire.MuxClose {
		t.Fatalf("the agent read %v %d %v (%v), want sub-stream %d's MuxClose", typ, id, it, err, s.id)
	}
	<-closed
	if n := active(); n != 0 {
		t.Fatalf("after both closes: active %d, want 0", n)
	}
}
