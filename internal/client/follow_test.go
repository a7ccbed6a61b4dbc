package client

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/tether-sh/tether/internal/wire"
)

// pipeChannel is an ssh.Channel over one end of a net.Pipe that counts its
// writes (each would be one SSH packet).
type pipeChannel struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *pipeChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}
func (c *pipeChannel) CloseWrite() error                              { return nil }
func (c *pipeChannel) SendRequest(string, bool, []byte) (bool, error) { return true, nil }
func (c *pipeChannel) Stderr() io.ReadWriter                          { return nil }
func (c *pipeChannel) written() int                                   { c.mu.Lock(); defer c.mu.Unlock(); return c.writes }

// A kept channel ends a run with its last ack and End in one write: one
// SSH packet, one relay write in the agent and one read in the session
// host instead of two each (#18). The records that came in one write with
// the response are taken before the attachment starts its goroutines.
func TestKeptRunEndsWithAckAndEndInOneWrite(t *testing.T) {
	clientEnd, hostEnd := net.Pipe()
	defer clientEnd.Close()
	defer hostEnd.Close()
	ch := &pipeChannel{Conn: clientEnd}
	var out bytes.Buffer
	f := &follower{d: &Dialer{}, conn: &Conn{}, keep: true, session: "s", stdout: &out, stderr: io.Discard}
	f.stream = &runStream{f: f, cmd: 7}
	f.lastSeq.Store(10)

	host := wire.NewConn(hostEnd, 0)
	got := make(chan []byte, 1)
	go func() {
		host.WriteOutputs([]wire.Output{
			{Seq: 11, Kind: wire.KindStdout, Cmd: 7, Data: []byte("hi\n")},
			{Seq: 12, Kind: wire.KindExit, Cmd: 7, Data: wire.EncodeExit(0, "")},
		})
		buf := make([]byte, 64)
		n, _ := hostEnd.Read(buf) // one write of the client: one read here
		got <- buf[:n]
		io.Copy(io.Discard, hostEnd) // whatever else the client writes
	}()
	if err := f.followToEnd(context.Background(), wire.NewConn(ch, 0), ch); err != nil {
		t.Fatal(err)
	}
	want := wire.AppendFrame(wire.AppendU64Frame(nil, wire.TAck, 12), wire.TEnd, nil)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the client's first write after the exit record: %x, want the ack of 12 and End %x", b, want)
	}
	if n := ch.written(); n != 1 {
		t.Fatalf("%d writes on the channel, want 1 (ack and End together)", n)
	}
	if out.String() != "hi\n" || f.conn.keptCount("s") != 1 {
		t.Fatalf("output %q, %d channels kept", out.String(), f.conn.keptCount("s"))
	}
}
