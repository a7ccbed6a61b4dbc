package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"unicode/utf8"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, 0)
	if err := c.WriteJSON(TRequest, Request{Op: "run", Command: "echo hi", Argv: []string{"a b", "", "\xff"}}); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0, 1, 2, 255}, 1000)
	if err := c.WriteOutput(Output{Seq: 7, Kind: 2, Cmd: 3, Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteU64(TStdin, 1<<40, []byte("in")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteResize(50, 132); err != nil {
		t.Fatal(err)
	}
	var req Request
	if err := c.ReadJSON(TRequest, &req); err != nil || req.Command != "echo hi" || req.Argv[2] != "\xff" || req.Argv[1] != "" {
		t.Fatalf("request: %+v %v", req, err)
	}
	typ, p, err := c.Read()
	if err != nil || typ != TOutput {
		t.Fatalf("output frame: %v %v", typ, err)
	}
	o, err := DecodeOutput(p)
	if err != nil || o.Seq != 7 || o.Kind != 2 || o.Cmd != 3 || !bytes.Equal(o.Data, data) {
		t.Fatalf("output: %+v %v", o, err)
	}
	typ, p, _ = c.Read()
	off, rest, err := DecodeU64(typ, p)
	if err != nil || off != 1<<40 || string(rest) != "in" {
		t.Fatalf("stdin: %d %q %v", off, rest, err)
	}
	typ, p, _ = c.Read()
	rows, cols, err := DecodeResize(p)
	if typ != TResize || rows != 50 || cols != 132 || err != nil {
		t.Fatalf("resize: %d %d %v", rows, cols, err)
	}
	if _, _, err := c.Read(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestOversizedFrameRefused(t *testing.T) {
	// A peer announcing 1 GiB is refused before anything is allocated.
	var buf bytes.Buffer
	buf.Write([]byte{0x40, 0, 0, 0, byte(TRequest)})
	c := NewConn(&buf, 0)
	if _, _, err := c.Read(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	// And we never send one.
	if err := NewConn(&bytes.Buffer{}, 1024).Write(TStdin, make([]byte, 2048)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("writing: %v", err)
	}
}

func TestHandshakeVersion(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := NewConn(b, 0)
		var h Hello
		c.ReadJSON(THello, &h)
		c.WriteJSON(THello, Hello{Proto: 99})
	}()
	_, err := NewConn(a, 0).Handshake(Hello{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("protocol 99")) {
		t.Fatalf("got %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	c := NewConn(&buf, 0)
	c.WriteJSON(TRequest, Request{Op: "run", Command: "x"})
	c.WriteOutput(Output{Seq: 1, Kind: 1, Data: []byte("hi")})
	c.WriteU64(TAck, 9, nil)
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewConn(bytes.NewBuffer(data), 4096)
		for i := 0; i < 64; i++ {
			typ, p, err := c.Read()
			if err != nil {
				return
			}
			if len(p) > 4096 {
				t.Fatalf("frame of %d bytes past the limit", len(p))
			}
			switch typ {
			case TOutput:
				DecodeOutput(p)
			case TStdin, TStdinEOF, TStdinAck, TAck:
				DecodeU64(typ, p)
			case TResize:
				DecodeResize(p)
			case THello:
				var h Hello
				DecodeJSON(typ, p, &h)
			case TRequest:
				var r Request
				DecodeJSON(typ, p, &r)
			case TResponse:
				var r Response
				DecodeJSON(typ, p, &r)
			case TSignal:
				var s Signal
				DecodeJSON(typ, p, &s)
			case TEvent:
				var e Event
				DecodeJSON(typ, p, &e)
			}
		}
	})
}

func FuzzDecodeOutput(f *testing.F) {
	var h [outputHeader]byte
	f.Add(append(OutputHeader(&h, Output{Seq: 5, Kind: 4, Cmd: 1}), 0, 0, 0, 3))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, p []byte) {
		o, err := DecodeOutput(p)
		if err != nil {
			return
		}
		var h [outputHeader]byte
		again := append(OutputHeader(&h, o), o.Data...)
		if !bytes.Equal(again, p) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// A command that is not valid UTF-8 survives JSON, whoever built the
// request; a valid one travels as a plain string.
func TestRequestCommandBytes(t *testing.T) {
	for _, cmd := range []string{"echo \xe9t\xe9 \xff", "echo été", ""} {
		b, err := json.Marshal(Request{Op: "run", Command: cmd})
		if err != nil {
			t.Fatal(err)
		}
		var got Request
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Script() != cmd {
			t.Fatalf("%q arrived as %q (%s)", cmd, got.Script(), b)
		}
		if utf8.ValidString(cmd) && got.CommandBytes != nil {
			t.Fatalf("valid %q was sent as bytes: %s", cmd, b)
		}
	}
}

func TestParseMaxSessions(t *testing.T) {
	for v, want := range map[string]int{
		"SSH-2.0-tether max-sessions=10":        10,
		"SSH-2.0-tether foo max-sessions=3 bar": 3,
		"SSH-2.0-tether":                        0,
		"SSH-2.0-OpenSSH_9.6 Ubuntu":            0,
		"SSH-2.0-tether max-sessions=-1":        0,
		"SSH-2.0-tether max-sessions=x":         0,
	} {
		if got := ParseMaxSessions(v); got != want {
			t.Errorf("ParseMaxSessions(%q) = %d, want %d", v, got, want)
		}
	}
}
