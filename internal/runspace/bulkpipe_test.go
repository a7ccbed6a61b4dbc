package runspace

import (
	"bytes"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
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
