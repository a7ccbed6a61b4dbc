package runspace

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"

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

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// A command's bulk output goes into the memory a PipeWriter lends (the
// journal's tail in the session host), whole and in order; only the first
// reads, before the output turned out to be bulk, are copied.
func TestBulkOutputReadIntoWriter(t *testing.T) {
	r := newRunspace(t, Options{})
	const n = 2_000_000 // 14.9 MB
	for _, script := range []string{"seq 1 2000000", "seq 1 2000000 2>&1"} {
		var w tstest.LendingBuffer
		code, err := r.Run(context.Background(), script, Streams{Stdout: &w, Stderr: &w})
		if err != nil || code != 0 {
			t.Fatalf("%q: code %d, %v", script, code, err)
		}
		if !bytes.Equal(w.Bytes(), seqOutput(n)) {
			t.Fatalf("%q: %d bytes of output, not seq's %d", script, len(w.Bytes()), len(seqOutput(n)))
		}
		lent, copied := w.Counts()
		if lent < 9*(lent+copied)/10 {
			t.Fatalf("%q: %d bytes read into the writer's memory, %d copied; want nearly all of them lent", script, lent, copied)
		}
	}
}

// A writer that fails does not stop the command: its output is drained
// (a child never blocks on a full pipe) and it exits.
func TestBulkOutputWriterFails(t *testing.T) {
	r := newRunspace(t, Options{})
	w := tstest.LendingBuffer{FailAfter: 1 << 20}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := r.Run(ctx, "head -c 64M /dev/zero; echo done >&2", Streams{Stdout: &w, Stderr: io.Discard})
	if err != nil || code != 0 {
		t.Fatalf("code %d, %v (the command should end, its output drained)", code, err)
	}
	if got := len(w.Bytes()); got < 1<<20 || got > 2<<20 {
		t.Fatalf("%d bytes written before the writer failed at 1 MiB", got)
	}
}
