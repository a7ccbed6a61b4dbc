package wire

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// WriteOutputs sends the same frames as WriteOutput, over a socket (writev)
// and over a plain writer, small and large data mixed.
func TestWriteOutputs(t *testing.T) {
	outs := []Output{
		{Seq: 1, Kind: 3, Cmd: 9, Data: []byte("cmd")},
		{Seq: 2, Kind: 1, Cmd: 9, Data: bytes.Repeat([]byte{1, 2, 3}, 40000)},
		{Seq: 3, Kind: 2, Cmd: 9},
		{Seq: 4, Kind: 1, Cmd: 9, Data: []byte("small")},
		{Seq: 5, Kind: 1, Cmd: 9, Data: bytes.Repeat([]byte{7}, MaxChunk)},
		{Seq: 6, Kind: 4, Cmd: 9, Data: []byte{0, 0, 0, 0}},
	}
	check := func(t *testing.T, c *Conn) {
		t.Helper()
		for _, want := range outs {
			typ, p, err := c.Read()
			if err != nil || typ != TOutput {
				t.Fatalf("frame %d: %v %v", want.Seq, typ, err)
			}
			o, err := DecodeOutput(p)
			if err != nil || o.Seq != want.Seq || o.Kind != want.Kind || o.Cmd != want.Cmd || !bytes.Equal(o.Data, want.Data) {
				t.Fatalf("frame %d: got seq %d kind %d cmd %d len %d, %v", want.Seq, o.Seq, o.Kind, o.Cmd, len(o.Data), err)
			}
		}
	}
	t.Run("buffer", func(t *testing.T) {
		var buf bytes.Buffer
		c := NewConn(&buf, 0)
		if err := c.WriteOutputs(outs); err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
	t.Run("socket", func(t *testing.T) {
		a, b, err := socketPair()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		errc := make(chan error, 1)
		go func() { errc <- NewConn(a, 0).WriteOutputs(outs) }()
		check(t, NewConn(b, 0))
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		var buf bytes.Buffer
		err := NewConn(&buf, 1000).WriteOutputs([]Output{{Seq: 1, Data: make([]byte, 1000)}})
		if !errors.Is(err, ErrFrameTooLarge) || buf.Len() != 0 {
			t.Fatalf("err %v, %d bytes written", err, buf.Len())
		}
	})
}

func socketPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("unix", "")
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		a.Close()
		return nil, nil, r.err
	}
	return a, r.c, nil
}

// countingWriter counts its Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

// A response encoded ahead goes out before the records, in the same write
// (one read and one packet for every peer on the way), and alone when no
// record is ready.
func TestWriteOutputsAfter(t *testing.T) {
	resp := Response{OK: true, Cmd: 7, StartSeq: 41}
	outs := []Output{{Seq: 42, Kind: 3, Cmd: 7, Data: []byte("true")}, {Seq: 43, Kind: 4, Cmd: 7, Data: []byte{0, 0, 0, 0}}}
	for _, tc := range []struct {
		name string
		outs []Output
	}{{"with records", outs}, {"alone", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			var w countingWriter
			c := NewConn(&w, 0)
			f, err := c.FrameJSON(TResponse, resp)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.WriteOutputsAfter(f, tc.outs); err != nil {
				t.Fatal(err)
			}
			if w.writes != 1 {
				t.Fatalf("%d writes, want 1", w.writes)
			}
			var got Response
			if err := c.ReadJSON(TResponse, &got); err != nil || got.Cmd != 7 || got.StartSeq != 41 || !got.OK {
				t.Fatalf("response %+v, %v", got, err)
			}
			for _, want := range tc.outs {
				typ, p, err := c.Read()
				if err != nil || typ != TOutput {
					t.Fatalf("frame %d: %v %v", want.Seq, typ, err)
				}
				if o, err := DecodeOutput(p); err != nil || o.Seq != want.Seq || !bytes.Equal(o.Data, want.Data) {
					t.Fatalf("frame %d: got %+v, %v", want.Seq, o, err)
				}
			}
			if w.Len() != 0 {
				t.Fatalf("%d bytes left after the frames", w.Len())
			}
		})
	}
	if _, err := NewConn(&bytes.Buffer{}, 10).FrameJSON(TResponse, resp); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a frame over the limit: %v, want ErrFrameTooLarge", err)
	}
}

// FrameBuffered says whether a whole frame waits in the read buffer: a
// client takes a short command's exit record that came with its response
// without starting the goroutines that wait on the stream.
func TestFrameBuffered(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, 0)
	if c.FrameBuffered() {
		t.Fatal("a frame buffered before any read")
	}
	buf.Write(AppendFrame(AppendU64Frame(nil, TAck, 5), TEnd, nil))
	buf.Write([]byte{0, 0, 0, 9, byte(TAck)}) // the head of a third frame
	if typ, _, err := c.Read(); err != nil || typ != TAck {
		t.Fatalf("first frame: %v %v", typ, err)
	}
	if !c.FrameBuffered() {
		t.Fatal("End, read with the ack, is not reported buffered")
	}
	if typ, _, err := c.Read(); err != nil || typ != TEnd {
		t.Fatalf("second frame: %v %v", typ, err)
	}
	if c.FrameBuffered() {
		t.Fatal("a frame of which only the head arrived is reported buffered")
	}
}
