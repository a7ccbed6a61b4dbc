package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"testing"

	"golang.org/x/crypto/ssh"
)

// packetReader returns its data one packet (at most size bytes) per Read,
// as an SSH channel does when the relay keeps up with the packets.
type packetReader struct {
	data []byte
	size int
}

func (p *packetReader) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.data[:min(len(p.data), p.size)])
	p.data = p.data[n:]
	return n, nil
}

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) { c.writes++; return c.Buffer.Write(p) }

// Stdin arriving in 32 KiB packets is relayed a packet per write, not
// split between the small and the large buffer (two writes a packet).
func TestCopyRelayStdinPackets(t *testing.T) {
	const packets, size = 64, 32 << 10
	data := make([]byte, packets*size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var w countingWriter
	copyRelay(&w, &packetReader{data: data, size: size}, stdinBulkRead)
	if !bytes.Equal(w.Bytes(), data) {
		t.Fatalf("relayed %d bytes that differ from the %d sent", w.Len(), len(data))
	}
	if w.writes > packets+1 {
		t.Fatalf("%d writes for %d packets: the relay left bulk mode between packets", w.writes, packets)
	}
}

// Output relayed to a client over a real SSH connection goes in packets
// whose copy on the receiving side (x/crypto/ssh allocates one per packet
// read) fits Go's 32 KiB size class: at a full 32 KiB payload each copy
// was a 40 KiB large object, 1.25 bytes allocated per byte received.
func TestOutputRelayPacketsFitSmallAllocations(t *testing.T) {
	ch, peer := sshChannelPair(t)
	const total = 32 << 20
	src := bytes.NewReader(make([]byte, total))
	go func() {
		copyRelay(packetWriter{ch}, src, outputBulkRead)
		ch.CloseWrite()
	}()
	buf := make([]byte, 256<<10)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for {
		k, err := peer.Read(buf)
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n != total {
		t.Fatalf("received %d bytes, sent %d", n, total)
	}
	// Both ends are in this process; the sender's packets are pooled.
	if got := after.TotalAlloc - before.TotalAlloc; float64(got) > 1.1*total {
		t.Fatalf("%d MiB allocated to relay %d MiB: packets do not fit the 32 KiB size class", got>>20, total>>20)
	}
}

// sshChannelPair returns the two ends of one session channel of an SSH
// connection over loopback TCP.
func sshChannelPair(t *testing.T) (server, client ssh.Channel) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvCh := make(chan ssh.Channel, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(srvCh)
			return
		}
		sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err != nil {
			nc.Close()
			close(srvCh)
			return
		}
		t.Cleanup(func() { sc.Close() })
		go ssh.DiscardRequests(reqs)
		nch := <-chans
		ch, creqs, err := nch.Accept()
		if err != nil {
			close(srvCh)
			return
		}
		go ssh.DiscardRequests(creqs)
		srvCh <- ch
	}()
	cc, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ch, reqs, err := cc.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	server, ok := <-srvCh
	if !ok {
		t.Fatal("server side of the channel failed")
	}
	return server, ch
}
