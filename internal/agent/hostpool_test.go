package agent

import (
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/sessionhost"
	"github.com/tether-sh/tether/internal/wire"
)

func frames(fs ...wire.Frame) []byte {
	var b []byte
	for _, f := range fs {
		b = append(b, f...)
	}
	return b
}

// TestRelayUntilEnd: the host's frames reach the client byte for byte and
// its TEnd does not, however reads cut the stream; the connection counts as
// ended only at a TEnd with nothing after it in the read that brought it (a
// host sends nothing after its TEnd before the agent's; what it might, the
// relay cannot wait for). A frame whose payload holds a TEnd's bytes is only
// payload.
func TestRelayUntilEnd(t *testing.T) {
	end := wire.AppendFrame(nil, wire.TEnd, nil)
	small := wire.AppendFrame(nil, wire.TResponse, []byte(`{"ok":true}`))
	bulk := wire.AppendFrame(nil, wire.TOutput, bytes.Repeat([]byte("x"), 300<<10))
	tricky := wire.AppendFrame(nil, wire.TOutput, bytes.Repeat(end, 10))
	cases := []struct {
		name   string
		stream []byte
		want   []byte
		ended  bool
	}{
		{"end", frames(small, tricky, bulk, end), frames(small, tricky, bulk), true},
		{"only the end", end, nil, true},
		{"no end: the host closed", frames(small, bulk), frames(small, bulk), false},
		{"bytes after the end, in one read", frames(small, end, small), small, false},
		{"a cut end", frames(small, end[:3]), small, false},
	}
	for _, tc := range cases {
		for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 4096, 5000, 1 << 20} {
			if strings.Contains(tc.name, "one read") && n < len(tc.stream) {
				continue
			}
			if n < 7 && len(tc.stream) > 1<<16 {
				continue // byte-sized reads of the bulk frame: slow, and n = 7 cuts headers too
			}
			var dst bytes.Buffer
			hc := wire.NewConnBuffer(struct {
				io.Reader
				io.Writer
			}{&packetReader{data: tc.stream, size: n}, io.Discard}, 0, 4<<10)
			ended := relayUntilEnd(&dst, hc, outputBulkRead)
			if ended != tc.ended || !bytes.Equal(dst.Bytes(), tc.want) {
				t.Errorf("%s, reads of %d: ended %v, %d bytes relayed; want %v, %d bytes (equal: %v)",
					tc.name, n, ended, dst.Len(), tc.ended, len(tc.want), bytes.Equal(dst.Bytes(), tc.want))
			}
		}
	}
}

// fakeHost serves a session socket as a session host would the first
// frames of runs: a Hello and a request, then a response, and on the same
// connection further requests without a Hello. It counts the requests.
type fakeHost struct {
	ln       net.Listener
	requests atomic.Int64
	accepts  atomic.Int64
	wg       sync.WaitGroup
}

func startFakeHost(t *testing.T, dir string) *fakeHost {
	t.Helper()
	ln, err := net.Listen("unix", sessionhost.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	fh := &fakeHost{ln: ln}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fh.accepts.Add(1)
			fh.wg.Add(1)
			go fh.serve(nc)
		}
	}()
	t.Cleanup(func() { ln.Close(); fh.wg.Wait() })
	return fh
}

func (fh *fakeHost) serve(nc net.Conn) {
	defer fh.wg.Done()
	defer nc.Close()
	c := wire.NewConn(nc, 0)
	if _, err := c.Handshake(wire.Hello{Proto: wire.HostVersion}); err != nil {
		return
	}
	for {
		var req wire.Request
		if err := c.ReadJSON(wire.TRequest, &req); err != nil {
			return
		}
		fh.requests.Add(1)
		if c.WriteJSON(wire.TResponse, wire.Response{OK: true}) != nil {
			return
		}
	}
}

// TestHostForRunRedialsADeadKeptConnection: a kept connection that died
// while idle is dropped and the run goes to a new one, where the host reads
// it once; a live kept connection is used without a dial; one opened for an
// admin is not lent to a user's run; a session that ended keeps nothing.
func TestHostForRunRedialsADeadKeptConnection(t *testing.T) {
	dir := e2e.ShortTempDir(t)
	fh := startFakeHost(t, dir)
	a := &Agent{}
	ref := &sessionRef{user: "me", name: "s", dir: dir, uid: os.Getuid()}
	id := identity{user: "me"}
	req := wire.Request{Op: wire.OpRun, Session: "s", Command: "true", EndMark: true}

	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := net.FileConn(os.NewFile(uintptr(fds[0]), "dead"))
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fds[1])
	a.hosts.put(ref, &idleHost{nc: dead, hc: wire.NewConn(dead, 0)})

	nc, hc, err := a.hostForRun(ref, id, req)
	if err != nil {
		t.Fatalf("run after a dead kept connection: %v", err)
	}
	var resp wire.Response
	if err := hc.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
		t.Fatalf("response on the new connection: %+v, %v", resp, err)
	}
	if r, d, k := fh.requests.Load(), a.hosts.dials.Load(), a.hosts.reuses.Load(); r != 1 || d != 1 || k != 0 {
		t.Fatalf("requests %d, dials %d, reuses %d; want 1, 1, 0 (the dead one dropped, the run sent once)", r, d, k)
	}

	a.hosts.put(ref, &idleHost{nc: nc, hc: hc})
	anc, _, err := a.hostForRun(ref, identity{user: "me", admin: true}, req)
	if err != nil {
		t.Fatal(err)
	}
	anc.Close()
	if d := a.hosts.dials.Load(); d != 2 {
		t.Fatalf("an admin's run: %d dials, want 2 (the user's kept connection is not its)", d)
	}
	nc2, hc2, err := a.hostForRun(ref, id, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := hc2.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
		t.Fatalf("response on the kept connection: %+v, %v", resp, err)
	}
	if d, k, acc := a.hosts.dials.Load(), a.hosts.reuses.Load(), fh.accepts.Load(); d != 2 || k != 1 || acc != 2 {
		t.Fatalf("dials %d, reuses %d, accepts %d; want 2, 1, 2 (the kept connection used)", d, k, acc)
	}

	a.hosts.drop(ref)
	a.hosts.put(ref, &idleHost{nc: nc2, hc: hc2})
	if _, err := nc2.Write([]byte{0}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("a connection kept after the session ended: write %v, want it closed", err)
	}
}
