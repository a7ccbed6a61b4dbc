package journal

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

// writtenBytes returns the bytes this process has written with write
// system calls so far (wchar of /proc/self/io: pwrite included).
func writtenBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no write counts: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no wchar in /proc/self/io")
	return 0
}

// A reader that keeps up and acknowledges what it read: the records it
// acknowledged while they were in the tail never reach the files (before
// the journal written behind, every byte did).
func TestAckedInTailNeverWritten(t *testing.T) {
	j := openT(t, Options{MaxBytes: 64 << 20, SegmentBytes: 1 << 20, SyncInterval: time.Hour})
	const n, size = 512, 128 << 10 // 64 MiB
	before := writtenBytes(t)
	var after uint64
	for i := range n {
		appendT(t, j, KindStdout, 1, payload(i, size))
		if i%4 == 3 { // a few records behind, as a client's acks are
			recs := readAll(t, j, after, 0)
			after = recs[len(recs)-1].Seq
			j.Ack(after)
		}
	}
	written := writtenBytes(t) - before
	if total := int64(n * size); written > total/20 {
		t.Fatalf("%d MiB written to the files for %d MiB acknowledged while in the tail", written>>20, total>>20)
	}
	t.Logf("%d KiB written for %d MiB", written>>10, n*size>>20)
}

// Unacknowledged records are written before they leave the tail: reading
// everything back (most of it from the files) returns every record intact.
func TestUnackedWrittenBeforeLeavingTail(t *testing.T) {
	j := openT(t, Options{MaxBytes: 64 << 20, SegmentBytes: 1 << 20, SyncInterval: time.Hour})
	const n, size = 3 * tailMaxBytes / 100000, 100000
	for i := range n {
		appendT(t, j, KindStdout, 1, payload(i, size))
	}
	if _, b, _ := tailState(j); b > tailMaxBytes+tailChunkBytes {
		t.Fatalf("tail holds %d bytes, bound %d", b, tailMaxBytes)
	}
	recs := readAll(t, j, 0, 1<<20)
	if len(recs) != n {
		t.Fatalf("read %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, payload(i, size)) {
			t.Fatalf("record %d (seq %d) differs", i+1, r.Seq)
		}
	}
	if reads, _, _ := tailState(j); reads == 0 {
		t.Fatal("nothing was read from the files: the test proves nothing")
	}
}

// Sync writes and fsyncs unacknowledged records that are only in the
// tail; a journal reopened after Close has every unacknowledged record.
func TestSyncWritesTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 1 << 20, SyncInterval: time.Hour})
	for i := range 10 {
		appendT(t, j, KindStdout, 1, payload(i, 1000))
	}
	seg := filepath.Join(dir, segFiles(t, dir)[0])
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, want := fileSize(t, seg), int64(10*EncodedSize(1000)); got < want {
		t.Fatalf("segment holds %d bytes after Sync, want %d", got, want)
	}
	appendT(t, j, KindStdout, 1, payload(10, 1000)) // only in the tail
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, Options{Dir: dir, SegmentBytes: 1 << 20, SyncInterval: time.Hour})
	recs := readAll(t, j, 0, 0)
	if len(recs) != 11 || !bytes.Equal(recs[10].Data, payload(10, 1000)) {
		t.Fatalf("reopened: %d records", len(recs))
	}
}

// The sync loop writes records no client acknowledged within an interval.
func TestSyncLoopWritesUnacked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 1 << 20, SyncInterval: 5 * time.Millisecond})
	appendT(t, j, KindStdout, 1, payload(0, 1000))
	seg := filepath.Join(dir, segFiles(t, dir)[0])
	tstest.WaitFor(t, testTimeout, "the record in its file", func() bool { return fileSize(t, seg) >= int64(EncodedSize(1000)) })
}

// Everything acknowledged with a MiB unwritten: the active segment is
// sealed (the next record starts a new one), the tail is empty, ReadRetained
// offers nothing from the sealed segment, and numbering survives a reopen.
func TestAllAckedSeals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 4 << 20, SyncInterval: time.Hour})
	for i := range 10 {
		appendT(t, j, KindStdout, 1, payload(i, 100000))
	}
	before := writtenBytes(t)
	j.Ack(j.Last())
	if _, b, c := tailState(j); b != 0 || c != 0 {
		t.Fatalf("after acking everything the tail holds %d bytes in %d chunks", b, c)
	}
	if w := writtenBytes(t) - before; w > 4096 {
		t.Fatalf("%d bytes written for acknowledged records", w)
	}
	recs, err := j.ReadRetained(0, 1<<20)
	if err != nil || len(recs) != 0 {
		t.Fatalf("ReadRetained after the seal: %d records, %v", len(recs), err)
	}
	s := appendT(t, j, KindStdout, 1, []byte("next"))
	if s != 11 {
		t.Fatalf("seq %d after 10 records", s)
	}
	if segs := segFiles(t, dir); len(segs) != 1 || segs[0] != segName(11) {
		t.Fatalf("segments after the seal: %v, want only %s", segs, segName(11))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, Options{Dir: dir, SegmentBytes: 4 << 20, SyncInterval: time.Hour})
	if recs := readAll(t, j, 0, 0); len(recs) != 1 || recs[0].Seq != 11 || string(recs[0].Data) != "next" {
		t.Fatalf("reopened: %+v", recs)
	}
}

// Acknowledgements 6 MiB late (a client's window and the sockets between):
// a tail of 8 MiB with 4 MiB segments writes most of the stream, one of
// Options.TailBytes = 16 MiB (a bash session's) writes none of it.
func TestTailBytesAboveAckLag(t *testing.T) {
	for _, tc := range []struct {
		tail int64
		most bool // most bytes written, not none
	}{{0, true}, {16 << 20, false}} {
		j := openT(t, Options{MaxBytes: 64 << 20, SegmentBytes: 4 << 20, SyncInterval: time.Hour, TailBytes: tc.tail})
		const n, size = 256, 256 << 10 // 64 MiB
		before := writtenBytes(t)
		var sent []uint64
		var after uint64
		for i := range n {
			appendT(t, j, KindStdout, 1, payload(i, size))
			recs := readAll(t, j, after, 0)
			after = recs[len(recs)-1].Seq
			if sent = append(sent, after); len(sent) > 24 { // 6 MiB late
				j.Ack(sent[0])
				sent = sent[1:]
			}
		}
		written := writtenBytes(t) - before
		if total := int64(n * size); tc.most != (written > total/2) || (!tc.most && written > total/20) {
			t.Errorf("TailBytes %d: %d MiB written of %d MiB", tc.tail, written>>20, total>>20)
		}
		t.Logf("TailBytes %d: %d MiB written of %d MiB", tc.tail, written>>20, n*size>>20)
	}
}

// A builtin session's journal (the defaults: an 8 MiB tail, 2 MiB segments)
// under bulk output to a client that keeps up but acknowledges late (its
// window and the sockets between hold up to 6 MiB): Append waits for the
// acks (pace.go) instead of running ahead, so the stream stays in the tail
// and is not written to the files. Before, most of it was.
func TestBulkToLateAckerNotWritten(t *testing.T) {
	j := openT(t, Options{MaxBytes: 64 << 20, SyncInterval: time.Hour})
	const n, size, lag = 256, 256 << 10, 6 << 20 // 64 MiB
	before := writtenBytes(t)
	done := make(chan error, 1)
	go func() {
		var after uint64
		var inFlight []Record // read, not acknowledged yet
		var bytes int
		for after < n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			err := j.Wait(ctx, after)
			cancel()
			if err != nil {
				// The stream paused: what was in flight arrives.
				if len(inFlight) > 0 {
					j.Ack(inFlight[len(inFlight)-1].Seq)
					inFlight, bytes = inFlight[:0], 0
				}
				continue
			}
			recs, err := j.Read(after, 0)
			if err != nil {
				done <- err
				return
			}
			for _, r := range recs {
				inFlight = append(inFlight, r)
				bytes += len(r.Data)
				after = r.Seq
			}
			for bytes > lag {
				bytes -= len(inFlight[0].Data)
				j.Ack(inFlight[0].Seq)
				inFlight = inFlight[1:]
			}
		}
		j.Ack(after)
		done <- nil
	}()
	for i := range n {
		appendT(t, j, KindStdout, 1, payload(i, size))
	}
	if err := recv(t, done, "the client"); err != nil {
		t.Fatal(err)
	}
	written := writtenBytes(t) - before
	if total := int64(n * size); written > total/20 {
		t.Fatalf("%d MiB written to the files of %d MiB delivered", written>>20, total>>20)
	}
	t.Logf("%d KiB written for %d MiB", written>>10, n*size>>20)
}
