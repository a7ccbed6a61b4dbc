package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A socket pair with small buffers: writes of more than they hold go out
// in parts, each after the poller saw the socket writable again.
func socketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestWritevReadLarge(t *testing.T) {
	a, b := socketPair(t)
	wa, err := New(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{bytes.Repeat([]byte("h"), 7), bytes.Repeat([]byte("0123456789"), 100_000), nil, []byte("end")}
	var want []byte
	for _, p := range parts {
		want = append(want, p...)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var n int
	var werr error
	go func() {
		defer wg.Done()
		n, werr = wa.Writev(parts...)
		a.CloseWrite()
	}()
	got, err := io.ReadAll(rb)
	wg.Wait()
	if werr != nil || n != len(want) {
		t.Fatalf("Writev = %d, %v; want %d, nil", n, werr, len(want))
	}
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
	}
}

func TestPipeDeadlineAndEOF(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := New(r)
	if err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 64)
	if _, err := fd.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read of an empty pipe past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	r.SetReadDeadline(time.Time{})
	w.Write([]byte("hi"))
	w.Close()
	if n, err := fd.Read(buf); n != 2 || err != nil || string(buf[:2]) != "hi" {
		t.Fatalf("Read = %d %q, %v", n, buf[:n], err)
	}
	if _, err := fd.Read(buf); err != io.EOF {
		t.Fatalf("Read after the writer closed: %v, want io.EOF", err)
	}
}

func TestWriteErrors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fd, err := New(w)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := fd.Write([]byte("x")); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("Write to a pipe without reader: %v, want EPIPE", err)
	}
}

// A descriptor in blocking mode is refused: a raw call on it would hold the
// processor while it waits.
func TestBlockingRefused(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(p[0]), "blocking")
	defer f.Close()
	defer unix.Close(p[1])
	if _, err := New(f); !errors.Is(err, ErrBlocking) {
		t.Fatalf("New of a blocking pipe: %v, want ErrBlocking", err)
	}
	reg, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := New(reg); err == nil {
		t.Fatal("New of a regular file: no error")
	}
}
