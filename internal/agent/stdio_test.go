package agent

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blockingPipe is a pipe as sshd gives a command: blocking descriptors
// (os.Pipe's are already non-blocking and polled).
func blockingPipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

// The stdio agent's pipes are served by the poller: non-blocking, with
// working deadlines (a blocking read would park a thread per packet, and
// the handshake's deadline was ignored).
func TestStdioPipesArePolled(t *testing.T) {
	inR, inW := blockingPipe(t)
	outR, outW := blockingPipe(t)
	defer unix.Close(inW)
	defer unix.Close(outR)
	c := stdioConnOf(inR, outW, nil, nil)
	defer c.Close()
	for _, fd := range []int{inR, outW} {
		if nb, err := isNonblock(fd); err != nil || !nb {
			t.Fatalf("fd %d: non-blocking %v, %v; want a polled descriptor", fd, nb, err)
		}
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a deadline and nothing sent: %v; want a deadline error", err)
	}
	c.SetReadDeadline(time.Time{})
	if _, err := unix.Write(inW, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "hi" {
		t.Fatalf("read %q, %v; want hi", b[:n], err)
	}
	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Read(outR, b); err != nil || string(b[:n]) != "ok" {
		t.Fatalf("peer read %q, %v; want ok", b[:n], err)
	}
}

// A file (or a terminal: its mode is shared with the shell) keeps its
// blocking mode.
func TestStdioFileStaysBlocking(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := pollable(int(f.Fd()), "in", f); got != f {
		t.Fatal("a regular file was replaced by a polled one")
	}
	if nb, _ := isNonblock(int(f.Fd())); nb {
		t.Fatal("a regular file was made non-blocking")
	}
}

func isNonblock(fd int) (bool, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return fl&unix.O_NONBLOCK != 0, err
}
