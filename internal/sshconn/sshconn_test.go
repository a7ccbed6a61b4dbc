package sshconn

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/tstest"
)

// countConn counts the writes that reach the socket.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Writev through net.Buffers is one write of the socket too.
func (c *countConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// sendOverSSH sends data from an SSH server to a client over one channel,
// through wrap on the server's side, and returns what the client read and
// how many writes reached the server's socket while the data went.
func sendOverSSH(t *testing.T, cipher string, data []byte, wrap func(net.Conn) net.Conn) ([]byte, int) {
	t.Helper()
	cc, sc := tcpPair(t)
	counted := &countConn{Conn: sc}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(signer)
	scfg.Ciphers = []string{cipher}
	type srv struct {
		writes int
		err    error
	}
	done := make(chan srv, 1)
	go func() {
		conn, chans, reqs, err := ssh.NewServerConn(wrap(counted), scfg)
		if err != nil {
			done <- srv{err: err}
			return
		}
		defer conn.Close()
		go ssh.DiscardRequests(reqs)
		nc := <-chans
		ch, creqs, err := nc.Accept()
		if err != nil {
			done <- srv{err: err}
			return
		}
		go ssh.DiscardRequests(creqs)
		before := counted.count()
		_, err = ch.Write(data)
		ch.CloseWrite()
		done <- srv{writes: counted.count() - before, err: err}
		io.Copy(io.Discard, ch) // until the client closes
	}()
	ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey(), Auth: []ssh.AuthMethod{ssh.Password("")}}
	ccfg.Ciphers = []string{cipher}
	conn, chans, reqs, err := ssh.NewClientConn(New(cc), "x", ccfg)
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(conn, chans, reqs)
	defer client.Close()
	ch, creqs, err := client.OpenChannel("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	got, err := io.ReadAll(ch)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	return got, s.writes
}

// TestOneWritePerPacket: a bulk channel write reaches the socket in about
// one write per 32 KiB packet under AES-GCM (which x/crypto/ssh writes in
// two parts) and chacha20-poly1305 (in one); without Conn AES-GCM takes two
// (the check that the test sees it). AES-CTR's packets, written in three
// parts (length, body, MAC), take two instead of three.
func TestOneWritePerPacket(t *testing.T) {
	data := make([]byte, 4<<20)
	rand.Read(data)
	packets := len(data) / (32 << 10)
	for _, cipher := range []string{"aes128-gcm@openssh.com", "aes128-ctr", "chacha20-poly1305@openssh.com"} {
		var w *Conn
		got, writes := sendOverSSH(t, cipher, data, func(c net.Conn) net.Conn { w = New(c); return w })
		if _, _, _, arms := w.Counts(); cipher == "aes128-gcm@openssh.com" && arms > packets/8 {
			// Once AES-GCM's clear lengths are trusted the timer is a
			// bound, armed at most every trustedHoldMax.
			t.Errorf("%s: the hold timer was armed %d times for %d packets", cipher, arms, packets)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: client read %d bytes, not the %d sent", cipher, len(got), len(data))
		}
		// The channel's end and a timer's send add a few writes.
		want := packets * 5 / 4
		if cipher == "aes128-ctr" {
			want = packets * 9 / 4
		}
		if writes > want {
			t.Errorf("%s: %d writes for %d packets through Conn; want at most %d", cipher, writes, packets, want)
		}
		t.Logf("%s: %d writes for %d packets", cipher, writes, packets)
	}
	_, writes := sendOverSSH(t, "aes128-gcm@openssh.com", data, func(c net.Conn) net.Conn { return c })
	if writes < packets*7/4 {
		t.Errorf("without Conn: %d writes for %d packets; the test expects x/crypto/ssh's two per packet (did its buffer change? see heldSize)", writes, packets)
	}
}

// TestHeldWriteSentByTimer: a write of exactly heldSize bytes that nothing
// follows (a whole packet under a cipher whose length is not in the clear)
// reaches the peer without another write.
func TestHeldWriteSentByTimer(t *testing.T) {
	cc, sc := tcpPair(t)
	w := New(cc)
	p := bytes.Repeat([]byte{0xff}, heldSize) // length field 0xffffffff: not a GCM packet of this size
	if n, err := w.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, heldSize)
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatalf("held write did not arrive: %v", err)
	}
	if !bytes.Equal(got, p) {
		t.Fatal("held write arrived changed")
	}
	tstest.WaitFor(t, 5*time.Second, "the timer to count its send", func() bool { _, _, timed, _ := w.Counts(); return timed == 1 })
}

// TestWholeGCMPacketNotHeld: a 4096-byte AES-GCM packet (its clear length
// says so) is written at once, and a held first part goes out with the
// write after it, in order.
func TestWholeGCMPacketNotHeld(t *testing.T) {
	cc, sc := tcpPair(t)
	w := New(cc)
	whole := make([]byte, heldSize)
	whole[2], whole[3] = 0x0f, 0xec // 4076 = 4096 - 4 - 16
	w.Write(whole)
	if holds, _, _, _ := w.Counts(); holds != 0 {
		t.Fatalf("a whole GCM packet was held")
	}
	first := bytes.Repeat([]byte{1}, heldSize)
	first[0] = 0 // length 0x00010101: longer than the write
	rest := bytes.Repeat([]byte{2}, 1000)
	w.Write(first)
	w.Write(rest)
	if holds, merges, _, _ := w.Counts(); holds != 1 || merges != 1 {
		t.Fatalf("holds, merges = %d, %d; want 1, 1", holds, merges)
	}
	want := append(append(append([]byte{}, whole...), first...), rest...)
	got := make([]byte, len(want))
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes arrived out of order or changed")
	}
}

// TestCloseSendsHeld: Close sends a held write before closing.
func TestCloseSendsHeld(t *testing.T) {
	cc, sc := tcpPair(t)
	w := New(cc)
	p := bytes.Repeat([]byte{0xff}, heldSize)
	w.Write(p)
	w.Close()
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(sc)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read %d bytes, %v; want the held %d", len(got), err, len(p))
	}
}

// readSyscalls returns this process's read system calls so far.
func readSyscalls(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no read counts: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// TestReadAhead: the receiving Conn reads a bulk stream in at most one read
// system call per 32 KiB packet; x/crypto/ssh alone makes two (its 4 KiB
// buffer's fill, then the rest of the packet).
func TestReadAhead(t *testing.T) {
	data := make([]byte, 8<<20)
	rand.Read(data)
	packets := len(data) / (32 << 10)
	before := readSyscalls(t)
	got, _ := sendOverSSH(t, "aes128-gcm@openssh.com", data, func(c net.Conn) net.Conn { return c })
	reads := readSyscalls(t) - before
	if !bytes.Equal(got, data) {
		t.Fatalf("client read %d bytes, not the %d sent", len(got), len(data))
	}
	// Both ends are in this process: the server reads the handshake
	// and the client's window adjustments (one per 3 packets) too.
	if want := packets * 3 / 2; reads > want {
		t.Errorf("%d read system calls for %d packets; want at most %d", reads, packets, want)
	}
	t.Logf("%d read system calls for %d packets", reads, packets)
}

// TestReadAheadKeepsBytes: reads of every size through Conn return the
// stream as written, and the end of it as io.EOF.
func TestReadAheadKeepsBytes(t *testing.T) {
	cc, sc := tcpPair(t)
	r := New(sc)
	data := make([]byte, 3<<20)
	rand.Read(data)
	go func() {
		p := data
		for i := 0; len(p) > 0; i++ {
			k := min(len(p), 1+(i*7919)%(200<<10))
			cc.Write(p[:k])
			p = p[k:]
		}
		cc.Close()
	}()
	var got []byte
	buf := make([]byte, 300<<10)
	for i := 0; ; i++ {
		k := 1 + (i*104729)%len(buf)
		n, err := r.Read(buf[:k])
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), len(data))
	}
	if r.ReadCalls() == 0 {
		t.Fatal("no read went through the read-ahead buffer")
	}
}

// TestReadAheadDeadline: a read deadline ends a Read waiting on an idle
// connection with a timeout, as net.Conn's does.
func TestReadAheadDeadline(t *testing.T) {
	_, sc := tcpPair(t)
	r := New(sc)
	r.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := r.Read(make([]byte, 4096))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read after the deadline: %v, want a timeout", err)
	}
}
