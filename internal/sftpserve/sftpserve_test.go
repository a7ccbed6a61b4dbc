package sftpserve

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pkg/sftp"
)

// TestRelativePathsUseDir: a relative path lands in dir, as `tether cp`
// relies on for "relative to the session's cwd".
func TestRelativePathsUseDir(t *testing.T) {
	dir := t.TempDir()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(a, dir) }()
	c, err := sftp.NewClientPipe(b, b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Create("rel.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "hello"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after the client closed: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "rel.txt"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("rel.txt in dir = %q, %v; want hello", got, err)
	}
}

// writeSizes records the largest single write the server makes.
type writeSizes struct {
	net.Conn
	mu  sync.Mutex
	max int
}

func (w *writeSizes) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.max = max(w.max, len(b))
	w.mu.Unlock()
	return w.Conn.Write(b)
}

// TestLargePackets: a client that asks for MaxPacket bytes per packet (as
// tether cp does when the session host says so) writes and reads a file in
// packets of that size — the server answers a read with up to MaxPacket,
// not pkg/sftp's default 32 KiB — and the bytes are intact; a client with
// pkg/sftp's defaults (32 KiB, as OpenSSH's) reads the same bytes.
func TestLargePackets(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(i*31 + i>>9)
	}
	a, b := net.Pipe()
	ws := &writeSizes{Conn: a}
	go Serve(ws, dir)
	c, err := sftp.NewClientPipe(b, b, sftp.MaxPacketUnchecked(MaxPacket), sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.Create("big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFromWithConcurrency(bytes.NewReader(data), 0); err != nil {
		t.Fatalf("write in %d-byte packets: %v", MaxPacket, err)
	}
	f.Close()
	if got, _ := os.ReadFile(filepath.Join(dir, "big")); !bytes.Equal(got, data) {
		t.Fatalf("the file written differs (%d bytes, want %d)", len(got), len(data))
	}
	f, err = c.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := f.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read back: %d bytes, %v; want the %d written", got.Len(), err, len(data))
	}
	f.Close()
	ws.mu.Lock()
	largest := ws.max
	ws.mu.Unlock()
	if largest < MaxPacket {
		t.Fatalf("largest server write %d bytes: reads were not answered in %d-byte packets", largest, MaxPacket)
	}

	a2, b2 := net.Pipe()
	go Serve(a2, dir)
	c2, err := sftp.NewClientPipe(b2, b2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	f2, err := c2.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	got.Reset()
	if _, err := f2.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("default client: %d bytes, %v; want the %d written", got.Len(), err, len(data))
	}
	f2.Close()
}
