package client

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/pipesize"
	"github.com/tether-sh/tether/internal/wire"
)

// patternReader yields n bytes of a position-dependent pattern in reads
// of varying size, as a pipe would.
type patternReader struct{ off, n int64 }

func patternByte(off int64) byte { return byte(off*7 + off>>12) }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(int64(len(b)), p.n-p.off, 1000+p.off%60000)
	for i := range b[:k] {
		b[i] = patternByte(p.off + int64(i))
	}
	p.off += k
	return int(k), nil
}

// receive reads stdin frames from c until EOF or until stopAt bytes have
// arrived, checking that they continue at want and carry the pattern; it
// acks as the host does and returns the offset reached.
func receive(t *testing.T, c *wire.Conn, s *stdinSender, want, stopAt int64) (int64, bool) {
	t.Helper()
	var exp []byte
	for want < stopAt {
		typ, p, err := c.Read()
		if err != nil {
			t.Fatalf("read at %d: %v", want, err)
		}
		off, data, err := wire.DecodeU64(typ, p)
		if err != nil {
			t.Fatal(err)
		}
		if int64(off) != want {
			t.Fatalf("%s frame at offset %d, want %d", typ, off, want)
		}
		if typ == wire.TStdinEOF {
			return want, true
		}
		exp = exp[:0]
		for i := range data {
			exp = append(exp, patternByte(want+int64(i)))
		}
		if !bytes.Equal(data, exp) {
			t.Fatalf("stdin bytes at %d..%d differ from what was read", want, want+int64(len(data)))
		}
		want += int64(len(data))
		s.ack(uint64(want))
	}
	return want, false
}

// Every byte of stdin arrives once and in order, also across a resume
// from an earlier offset, and forwarding it costs no allocation per byte
// (the buffer is reused, not grown by append and cut at the front).
func TestStdinSenderExactAndReusesBuffer(t *testing.T) {
	const n = 64 << 20
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	s := newStdinSender(&patternReader{n: n})

	a, b := net.Pipe()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.pump(wire.NewConn(a, 0), stop) }()
	rc := wire.NewConn(b, 0)
	got, _ := receive(t, rc, s, 0, n/2)
	close(stop)
	a.Close()
	b.Close()
	<-done

	// The host says it has got; sending goes on from there on a new channel.
	s.resume(uint64(got))
	a, b = net.Pipe()
	stop = make(chan struct{})
	go func() { done <- s.pump(wire.NewConn(a, 0), stop) }()
	end, eof := receive(t, wire.NewConn(b, 0), s, got, n+1)
	if !eof || end != n {
		t.Fatalf("stdin ended at %d (eof %v), want %d", end, eof, n)
	}
	close(stop)
	a.Close()
	b.Close()
	<-done

	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > n/4 {
		t.Fatalf("forwarding %d MiB of stdin allocated %d MiB", n>>20, alloc>>20)
	}
}

// Stdin from a pipe that carries bulk data: the pipe is grown (pipesize)
// and every byte still arrives once and in order.
func TestStdinSenderGrowsBulkPipe(t *testing.T) {
	const n = 16 << 20
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		// Writes larger than the pipe, as a program streaming data makes.
		io.CopyBuffer(struct{ io.Writer }{w}, &bigReader{&patternReader{n: n}}, make([]byte, 256<<10))
		w.Close()
	}()
	s := newStdinSender(r)
	a, b := net.Pipe()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.pump(wire.NewConn(a, 0), stop) }()
	end, eof := receive(t, wire.NewConn(b, 0), s, 0, n+1)
	if !eof || end != n {
		t.Fatalf("stdin ended at %d (eof %v), want %d", end, eof, n)
	}
	close(stop)
	a.Close()
	b.Close()
	<-done
	size, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if size < pipesize.Bulk {
		t.Fatalf("stdin pipe is %d bytes after %d MiB through it; want it grown to %d", size, n>>20, pipesize.Bulk)
	}
}

// bigReader fills whole buffers from a patternReader.
type bigReader struct{ r *patternReader }

func (b *bigReader) Read(p []byte) (int, error) { return io.ReadFull(b.r, p) }
