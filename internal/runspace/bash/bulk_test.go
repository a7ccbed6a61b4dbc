package bash

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/tstest"
)

// gatedWriter counts bytes and the largest Write. Its first Write waits
// for the file gate1; the Write after the first full 32 KiB one (the read
// that grows the pipe) waits for gate2.
type gatedWriter struct {
	t            *testing.T
	gate1, gate2 string
	mu           sync.Mutex
	n, most, k   int
	full         bool
}

func (w *gatedWriter) wait(gate string) {
	tstest.WaitFor(w.t, 10*time.Second, "the command to get to "+filepath.Base(gate), func() bool {
		_, err := os.Stat(gate)
		return err == nil
	})
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.k++
	first, afterFull := w.k == 1, w.full
	w.full = w.full || len(p) == 32<<10
	w.n += len(p)
	w.most = max(w.most, len(p))
	w.mu.Unlock()
	switch {
	case first:
		w.wait(w.gate1)
	case afterFull:
		w.wait(w.gate2)
		w.mu.Lock()
		w.full = false
		w.gate2 = ""
		w.mu.Unlock()
	}
	return len(p), nil
}

// A command that streams output gets a grown pipe and is read in large
// pieces (runspace.BulkPipe): its output, written while the session host
// is not reading, comes in reads larger than the kernel's 64 KiB pipe.
func TestBulkOutputGrowsPipe(t *testing.T) {
	s := newShell(t, Options{NoProfile: true})
	dir := t.TempDir()
	w := &gatedWriter{t: t, gate1: filepath.Join(dir, "gate1"), gate2: filepath.Join(dir, "gate2")}
	// 64 KiB fill the kernel's pipe while the first Write waits, so the
	// next read is full and grows the pipe; the rest (less than the grown
	// pipe holds) is written while the Write after that waits.
	const size = 65536 + 800000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	script := "head -c 65536 /dev/zero; : > " + w.gate1 + "; head -c 800000 /dev/zero; : > " + w.gate2
	code, err := s.Run(ctx, script, runspace.Streams{Stdout: w})
	if err != nil || code != 0 {
		t.Fatalf("Run: %d, %v", code, err)
	}
	if w.n != size {
		t.Fatalf("%d bytes of output, want %d", w.n, size)
	}
	if w.most <= 64<<10 {
		t.Fatalf("largest read of the output pipe %d bytes; want more than the kernel's 64 KiB pipe", w.most)
	}
}

// A bash command's bulk output goes into the memory a PipeWriter lends
// (the journal's tail in the session host), whole and in order, also when
// bash's end of the command cuts a read short; stderr's small writes
// alongside arrive too.
func TestBulkOutputReadIntoWriter(t *testing.T) {
	s := newShell(t, Options{NoProfile: true})
	var want bytes.Buffer
	for i := 1; i <= 2_000_000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	for range 3 {
		var out tstest.LendingBuffer
		var errw tstest.SyncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code, err := s.Run(ctx, "seq 1 2000000; echo done >&2", runspace.Streams{Stdout: &out, Stderr: &errw})
		cancel()
		if err != nil || code != 0 {
			t.Fatalf("Run: %d, %v", code, err)
		}
		if !bytes.Equal(out.Bytes(), want.Bytes()) || errw.String() != "done\n" {
			t.Fatalf("%d bytes of output, not seq's %d; stderr %q", len(out.Bytes()), want.Len(), errw.String())
		}
		if lent, copied := out.Counts(); lent < 9*(lent+copied)/10 {
			t.Fatalf("%d bytes read into the writer's memory, %d copied; want nearly all of them lent", lent, copied)
		}
	}
}

// A background job that streams bulk output after its command ended does
// not hold the command up: the command returns, and what the job writes
// later goes to LateOutput, while its output is read into the writer's
// memory.
func TestBulkOutputOfBackgroundJobGoesLate(t *testing.T) {
	var lateBytes atomic.Int64
	s := newShell(t, Options{NoProfile: true, LateOutput: func(stream int, p []byte) { lateBytes.Add(int64(len(p))) }})
	// A writer slower than the job: the pipe never runs empty.
	out := tstest.LendingBuffer{Lend: 64 << 10, Delay: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The job writes without pause; the command ends once it has written
	// enough for the pipe to be read in bulk.
	code, err := s.Run(ctx, "yes & while [ $(sed -n 's/^wchar: //p' /proc/$!/io) -lt 4000000 ]; do sleep 0.01; done", runspace.Streams{Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("Run: %d, %v (a background job's output held the command up)", code, err)
	}
	if lent, _ := out.Counts(); lent == 0 {
		t.Fatal("the job's bulk output was not read into the writer's memory")
	}
	tstest.WaitFor(t, 10*time.Second, "the job's later output", func() bool { return lateBytes.Load() > 1<<20 })
	if code, err := s.Run(ctx, "kill %1; wait", runspace.Streams{}); err != nil {
		t.Fatalf("kill the job: %d, %v", code, err)
	}
}
