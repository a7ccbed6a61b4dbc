package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// bulkFrames writes output frames of the given payload sizes, each filled
// with its index, and returns the stream.
func bulkFrames(t *testing.T, sizes []int) []byte {
	t.Helper()
	var buf bytes.Buffer
	c := NewConn(&struct {
		io.Reader
		io.Writer
	}{nil, &buf}, 0)
	for i, n := range sizes {
		if err := c.WriteOutput(Output{Seq: uint64(i + 1), Kind: KindStdout, Cmd: 7, Data: bytes.Repeat([]byte{byte(i)}, n)}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// readAllFrames reads frames until an error and checks each against sizes.
func readAllFrames(t *testing.T, c *Conn, sizes []int) error {
	t.Helper()
	for i := 0; ; i++ {
		typ, p, err := c.Read()
		if err != nil {
			if i != len(sizes) && err == io.EOF {
				t.Fatalf("EOF after %d of %d frames", i, len(sizes))
			}
			return err
		}
		o, err := DecodeOutput(p)
		if typ != TOutput || err != nil || o.Seq != uint64(i+1) || len(o.Data) != sizes[i] || (len(o.Data) > 0 && (o.Data[0] != byte(i) || o.Data[len(o.Data)-1] != byte(i))) {
			t.Fatalf("frame %d: %s %v seq %d, %d bytes, want %d", i, typ, err, o.Seq, len(o.Data), sizes[i])
		}
	}
}

type readCounter struct {
	r     io.Reader
	calls int
}

func (c *readCounter) Read(p []byte) (int, error) { c.calls++; return c.r.Read(p) }

// A Conn switched to ReadBulk returns the same frames however the stream
// arrives (a byte at a time, halves, everything at once), including frames
// larger than its buffer and frames split across its end.
func TestReadBulkFrames(t *testing.T) {
	sizes := []int{0, 1, 300 << 10, 5, 70 << 10, 256 << 10, 900 << 10, 3, 1<<20 - 100, 17, 200 << 10}
	stream := bulkFrames(t, sizes)
	small := []int{0, 1, 30 << 10, 5, 70 << 10, 3, 100 << 10, 17}
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"half":     iotest.HalfReader,
		"bytes":    iotest.OneByteReader,
		"data-err": func(r io.Reader) io.Reader { return iotest.DataErrReader(r) },
	} {
		t.Run(name, func(t *testing.T) {
			sizes, stream, size := sizes, stream, 512<<10
			if name == "bytes" { // a read per byte: a smaller stream and buffer
				sizes, stream, size = small, bulkFrames(t, small), 64<<10
			}
			c := NewConn(struct {
				io.Reader
				io.Writer
			}{wrap(bytes.NewReader(stream)), io.Discard}, 0)
			c.ReadBulk(size)
			if err := readAllFrames(t, c, sizes); err != io.EOF {
				t.Fatalf("end of stream: %v, want io.EOF", err)
			}
		})
	}
}

// ReadBulk reads the stream in big reads: 4 MiB of output in 100 KiB
// frames takes a few reads of the 1 MiB buffer, where Read alone took one
// or two per frame (its 64 KiB buffer, then the rest of the frame).
func TestReadBulkReadsBig(t *testing.T) {
	sizes := make([]int, 40)
	for i := range sizes {
		sizes[i] = 100 << 10
	}
	stream := bulkFrames(t, sizes)
	rc := &readCounter{r: bytes.NewReader(stream)}
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{rc, io.Discard}, 0)
	c.ReadBulk(1 << 20)
	if err := readAllFrames(t, c, sizes); err != io.EOF {
		t.Fatal(err)
	}
	if max := len(stream)/(768<<10) + 3; rc.calls > max {
		t.Fatalf("%d reads of the stream for %d bytes, want at most %d", rc.calls, len(stream), max)
	}
	// The same stream without ReadBulk, for the record of what it saves.
	rc0 := &readCounter{r: bytes.NewReader(stream)}
	c0 := NewConn(struct {
		io.Reader
		io.Writer
	}{rc0, io.Discard}, 0)
	readAllFrames(t, c0, sizes)
	t.Logf("reads for %d frames: %d with ReadBulk, %d without", len(sizes), rc.calls, rc0.calls)
	if rc0.calls <= rc.calls {
		t.Fatalf("ReadBulk read %d times, Read alone %d", rc.calls, rc0.calls)
	}
}

// A stream that ends inside a frame is io.ErrUnexpectedEOF, one that ends
// between frames io.EOF, a frame over the limit ErrFrameTooLarge: as Read.
func TestReadBulkErrors(t *testing.T) {
	sizes := []int{10, 200 << 10}
	stream := bulkFrames(t, sizes)
	for _, cut := range []int{len(stream) - 1, len(stream) - (200 << 10), 4 + 1 + 13 + 10 + 2} {
		c := NewConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(stream[:cut]), io.Discard}, 0)
		c.ReadBulk(64 << 10)
		var err error
		for err == nil {
			_, _, err = c.Read()
		}
		if err != io.ErrUnexpectedEOF {
			t.Errorf("stream cut at %d of %d: %v, want io.ErrUnexpectedEOF", cut, len(stream), err)
		}
	}
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(stream), io.Discard}, 64<<10)
	c.ReadBulk(64 << 10)
	if _, _, err := c.Read(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame of 200 KiB over a 64 KiB limit: %v", err)
	}
}

// A switch to ReadBulk after some frames keeps what Read had buffered, and
// Reader and EndBulk keep what ReadBulk read ahead.
func TestReadBulkSwitchAndReader(t *testing.T) {
	sizes := []int{5, 6, 7}
	stream := append(bulkFrames(t, sizes), "rest of the stream"...)
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(stream), io.Discard}, 0)
	if _, p, err := c.Read(); err != nil || len(p) != 13+5 {
		t.Fatalf("first frame: %v, %d bytes", err, len(p))
	}
	c.ReadBulk(64 << 10)
	if _, p, err := c.Read(); err != nil || len(p) != 13+6 {
		t.Fatalf("second frame: %v, %d bytes", err, len(p))
	}
	c.EndBulk() // the third frame is read ahead: the mode stays
	if _, p, err := c.Read(); err != nil || len(p) != 13+7 {
		t.Fatalf("third frame after EndBulk: %v, %d bytes", err, len(p))
	}
	rest, err := io.ReadAll(c.Reader())
	if err != nil || string(rest) != "rest of the stream" {
		t.Fatalf("Reader after bulk reads: %q, %v", rest, err)
	}
	// Nothing left read ahead: EndBulk drops the buffer.
	c = NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(bulkFrames(t, sizes)), io.Discard}, 0)
	c.ReadBulk(64 << 10)
	for range sizes {
		if _, _, err := c.Read(); err != nil {
			t.Fatal(err)
		}
	}
	c.EndBulk()
	if c.bulk != nil {
		t.Fatal("EndBulk with nothing read ahead kept the bulk buffer")
	}
	if _, _, err := c.Read(); err != io.EOF {
		t.Fatalf("after EndBulk: %v, want io.EOF", err)
	}
}
