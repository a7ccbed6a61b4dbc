package wire

import (
	"bytes"
	"testing"
)

func TestMuxFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, 0)
	if err := c.WriteMux(7, TAck, []byte("12345678")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMux(8, MuxClose, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		id    uint32
		t     Type
		inner string
	}{{7, TAck, "12345678"}, {8, MuxClose, ""}} {
		typ, p, err := c.Read()
		if err != nil || typ != TMux {
			t.Fatalf("read: %v %s", err, typ)
		}
		id, it, inner, err := DecodeMux(p)
		if err != nil || id != want.id || it != want.t || string(inner) != want.inner {
			t.Errorf("got %d %s %q %v, want %d %s %q", id, it, inner, err, want.id, want.t, want.inner)
		}
	}
	if _, _, _, err := DecodeMux([]byte{0, 0, 1}); err == nil {
		t.Error("a 3-byte mux payload decoded")
	}
}

func TestParseMux(t *testing.T) {
	for v, want := range map[string]int{
		"SSH-2.0-tether max-sessions=10 mux=16": 16,
		"SSH-2.0-tether mux=4":                  4,
		"SSH-2.0-tether max-sessions=10":        0,
		"SSH-2.0-tether mux=x":                  0,
		"SSH-2.0-tether mux=-1":                 0,
		"SSH-2.0-OpenSSH_9.2":                   0,
	} {
		if got := ParseMux(v); got != want {
			t.Errorf("ParseMux(%q) = %d, want %d", v, got, want)
		}
	}
}
