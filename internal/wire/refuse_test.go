package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// A refusal wrapped with context keeps its code: the client acts on it
// (busy, not_found, ...). The old copies in agent and sessionhost used a
// type assertion and sent a wrapped *Error as internal.
func TestRefuseWrapped(t *testing.T) {
	err := fmt.Errorf("open session: %w", Errorf(CodeBusy, "session s is Busy"))
	resp := Refuse(err)
	if resp.OK || resp.Error == nil || resp.Error.Code != CodeBusy || resp.Error.Message != "session s is Busy" {
		t.Fatalf("Refuse(wrapped busy) = %+v", resp.Error)
	}
	resp = Refuse(errors.New("disk full"))
	if resp.Error == nil || resp.Error.Code != CodeInternal || resp.Error.Message != "disk full" {
		t.Fatalf("Refuse(plain) = %+v", resp.Error)
	}
}

func TestExitPayload(t *testing.T) {
	for _, c := range []struct {
		code int
		msg  string
	}{{0, ""}, {1, ""}, {-1, "x"}, {137, "MaxShellRunTime (1s) reached"}} {
		code, msg, err := DecodeExit(EncodeExit(c.code, c.msg))
		if err != nil || code != c.code || msg != c.msg {
			t.Fatalf("%d %q: got %d %q %v", c.code, c.msg, code, msg, err)
		}
	}
	if _, _, err := DecodeExit([]byte{1, 2}); err == nil {
		t.Fatal("short exit record accepted")
	}
	if n := DecodeDropped(EncodeDropped(1 << 40)); n != 1<<40 {
		t.Fatalf("dropped %d", n)
	}
}

// Every op is listed once in Ops, and a Request's op travels as its name.
func TestOps(t *testing.T) {
	seen := map[Op]bool{}
	for _, op := range Ops {
		if op == "" || seen[op] {
			t.Fatalf("op %q empty or listed twice", op)
		}
		seen[op] = true
	}
	b, err := json.Marshal(Request{Op: OpConfigGet, Key: "IdleTimeout"})
	if err != nil || string(b) != `{"op":"config.get","client":{"id":"","host":""},"key":"IdleTimeout"}` {
		t.Fatalf("%s %v", b, err)
	}
}
