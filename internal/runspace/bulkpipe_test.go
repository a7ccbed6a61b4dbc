package runspace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/rawio"
)

// Bulk stdin for a command: the pipe grows, and every byte arrives once,
// in order.
func TestCopyToPipeGrowsPipe(t *testing.T) {
	data := make([]byte, 4<<20+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errc := make(chan error, 1)
	go func() {
		err := CopyToPipe(w, bytes.NewReader(data))
		w.Close()
		errc <- err
	}()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("CopyToPipe: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes came through, not the %d written", len(got), len(data))
	}
	size, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if size < BulkPipeBytes {
		t.Fatalf("pipe is %d bytes after bulk stdin; want %d", size, BulkPipeBytes)
	}
}

// A command's output pipe is read with raw system calls (rawio), and its
// read deadline (the bash copier's end of a command) still holds.
func TestPipeReaderRaw(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	rd := PipeReader(r)
	if _, ok := rd.(*rawio.FD); !ok {
		t.Fatalf("PipeReader of os.Pipe's read end is %T, not raw", rd)
	}
	w.Write([]byte("out"))
	buf := make([]byte, 16)
	if n, err := rd.Read(buf); err != nil || string(buf[:n]) != "out" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	r.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := rd.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read of an empty pipe past its deadline: %v", err)
	}
}
