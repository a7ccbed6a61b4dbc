package client

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/clock"
	"github.com/tether-sh/tether/internal/wire"
)

// The resume core of Dialer.Run against an agent in the test process (its
// session hosts are the tether binary): the transport is cut after each
// record of a multi-record output, and the client's own reconnect must
// deliver every record exactly once. Backoff runs on a fake clock.

// The op the test names (issue 13 moves ops into wire).
const opNew = "new"

// multi writes alternately to stdout and stderr: one record per write.
const multi = `printf 'one\n'; printf 'two\n' >&2; printf 'three\n'; printf 'four\n' >&2; printf 'five\n'; exit 3`

type cutDialer struct {
	mu   sync.Mutex
	cur  net.Conn
	dial int
}

func (c *cutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		c.mu.Lock()
		c.cur, c.dial = nc, c.dial+1
		c.mu.Unlock()
	}
	return nc, err
}

// cut breaks the current transport, as a network cut would.
func (c *cutDialer) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		c.cur.Close()
	}
}

func (c *cutDialer) dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dial
}

// recorder collects what the client writes, tagged by stream, and calls
// onWrite after each write (a write is a record).
type recorder struct {
	mu      sync.Mutex
	b       strings.Builder
	writes  int
	onWrite func(n int)
}

func (r *recorder) stream(tag string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		r.mu.Lock()
		r.b.WriteString(tag + string(p))
		r.writes++
		n := r.writes
		r.mu.Unlock()
		if r.onWrite != nil {
			r.onWrite(n)
		}
		return len(p), nil
	})
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.b.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func startTestAgent(t *testing.T) (addr string, d *Dialer, cuts *cutDialer) {
	t.Helper()
	addrs, d := inProcessAgents(t, 1, "")
	cuts = &cutDialer{}
	d.Client.ID = "resume-test"
	d.DialNet = cuts.DialContext
	d.Clock = clock.NewFake(time.Time{}) // backoff never waits real time
	return addrs[0], d, cuts
}

func TestRunResumesAtEveryRecordBoundary(t *testing.T) {
	addr, d, cuts := startTestAgent(t)
	target, err := ParseTarget(addr + "/work")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The builtin shell: its stdout and stderr keep their interleaving
	// (one record each), which bash's separate pipes do not.
	newBuiltinSession(t, d, target)

	const want = "o:one\ne:two\no:three\ne:four\no:five\n"
	run := func(cutAfter int) (Result, *recorder, error) {
		rec := &recorder{}
		rec.onWrite = func(n int) {
			if n == cutAfter {
				cuts.cut()
			}
		}
		res, err := d.Run(ctx, nil, RunSpec{
			Target: target, Request: wire.Request{Command: multi},
			Stdout: rec.stream("o:"), Stderr: rec.stream("e:"),
			ReconnectTimeout: time.Minute,
		})
		return res, rec, err
	}
	res, rec, err := run(0)
	if err != nil || res.ExitCode != 3 || rec.String() != want {
		t.Fatalf("uncut run: %v, exit %d, output %q", err, res.ExitCode, rec.String())
	}
	// A cut after each of the five output records (the last one falls
	// before the exit record).
	resumed, leftDisconnected := 0, 0
	for k := 1; k <= 5; k++ {
		// Known bug (TestResumedRunLeavesSessionConnected): right after
		// a resumed run, the session may be Disconnected for a moment.
		// This test checks exactly-once delivery: reattach if so.
		if st := sessionState(t, d, target); st == wire.StateDisconnected {
			leftDisconnected++
			call(t, d, target, wire.Request{Op: opConnect, Session: "work", Client: d.Client})
		}
		before := cuts.dials()
		res, rec, err := run(k)
		if err != nil {
			t.Fatalf("cut after record %d: %v", k, err)
		}
		if got := rec.String(); got != want {
			t.Fatalf("cut after record %d: output %q, want %q (a record lost or repeated)", k, got, want)
		}
		if res.ExitCode != 3 {
			t.Fatalf("cut after record %d: exit %d, want 3", k, res.ExitCode)
		}
		// Records after k may already be in the client's read buffer
		// when the cut lands; then it finishes without reconnecting.
		if cuts.dials()-before >= 2 {
			resumed++
		}
	}
	if resumed == 0 {
		t.Fatal("no cut made the client reconnect: the test cut nothing")
	}
	t.Logf("%d of 5 cuts resumed through a reconnect; %d left the session Disconnected", resumed, leftDisconnected)
}

const (
	opConnect = "connect"
	opStatus  = "status"
)

// call sends one request to the agent on a connection of its own.
func call(t *testing.T, d *Dialer, target Target, req wire.Request) wire.Response {
	t.Helper()
	c, err := d.Dial(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wc, ch, err := c.Open(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		t.Fatalf("%s: %v", req.Op, err)
	}
	return resp
}

func sessionState(t *testing.T, d *Dialer, target Target) string {
	t.Helper()
	resp := call(t, d, target, wire.Request{Op: opStatus, Session: target.Session, Client: d.Client})
	if !resp.OK || resp.Session == nil {
		t.Fatalf("status: %+v", resp.Error)
	}
	return resp.Session.State
}

// After Dialer.Run returns from a command it had to resume, the client's
// next command must run: a cut after the client had the exit record (its
// ack lost with the transport) leaves the session Disconnected, and the
// same client's next command resumes it (sessionhost brokenBy).
func TestResumedRunLeavesSessionConnected(t *testing.T) {
	addr, d, cuts := startTestAgent(t)
	target, _ := ParseTarget(addr + "/work")
	if resp := call(t, d, target, wire.Request{Op: opNew, Session: "work", Client: d.Client}); !resp.OK {
		t.Fatalf("new: %+v", resp.Error)
	}
	for i := 0; i < 15; i++ {
		rec := &recorder{}
		rec.onWrite = func(n int) {
			if n == i%5+1 {
				cuts.cut()
			}
		}
		if _, err := d.Run(context.Background(), nil, RunSpec{Target: target, Request: wire.Request{Command: multi},
			Stdout: rec.stream("o:"), Stderr: rec.stream("e:"), ReconnectTimeout: time.Minute}); err != nil {
			// The run right after a resumed one is refused:
			// "session work is Disconnected".
			t.Fatalf("run %d, just after a resumed run returned: %v", i, err)
		}
	}
}
