package peercred

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestUIDOfBothEnds(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	for _, conn := range []net.Conn{c, s} {
		uid, err := UID(conn)
		if err != nil || uid != os.Geteuid() {
			t.Fatalf("UID = %d, %v; want %d", uid, err, os.Geteuid())
		}
	}
}

func TestUIDRefusesOtherConnections(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := UID(a); err != ErrNotUnix {
		t.Fatalf("err = %v, want ErrNotUnix", err)
	}
}
