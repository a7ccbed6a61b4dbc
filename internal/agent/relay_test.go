package agent

import (
	"bytes"
	"io"
	"testing"
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
