package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

// A client that keeps up makes the journal roll segments; their files are
// reused (the spare), not created and deleted per segment.
func TestSpareSegmentReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 64 << 10, SyncInterval: time.Hour})
	for i := range 64 {
		j.Ack(appendT(t, j, KindStdout, 1, payload(i, 16<<10)))
	}
	// 64 records of 16 KiB fill about 16 segments of 64 KiB; with the
	// spare, two or three files serve them all.
	if n := j.creates.Load(); n > 3 {
		t.Fatalf("%d segment files created for 16 segments: the spare is not reused", n)
	}
}

// A reused segment file holds stale records of older sequence numbers
// after its own; recovery stops at them, and nothing is lost or repeated.
func TestSpareSegmentRecovery(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j, err := Open(Options{Dir: dir, SegmentBytes: 64 << 10, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 40 {
		last = appendT(t, j, KindStdout, 1, payload(i, 16<<10))
		j.Ack(last)
	}
	// Unacknowledged: a few small records in the (reused) active segment.
	want := map[uint64][]byte{}
	for i := range 3 {
		seq := appendT(t, j, KindStdout, 1, payload(100+i, 100))
		want[seq] = payload(100+i, 100)
	}
	j.mu.Lock()
	active := j.segs[len(j.segs)-1]
	path, size := active.path, active.size
	j.mu.Unlock()
	if fileSize(t, path) <= size {
		t.Fatalf("active segment %s is %d bytes for %d of records: not a reused file with stale records, the test proves nothing", path, fileSize(t, path), size)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spareName)); !os.IsNotExist(err) {
		t.Fatalf("Close left the spare: %v", err)
	}
	j2 := openT(t, Options{Dir: dir, SegmentBytes: 64 << 10, SyncInterval: time.Hour})
	recs := readAll(t, j2, last, 1<<20)
	if len(recs) != len(want) {
		t.Fatalf("recovered %d records after %d, want %d", len(recs), last, len(want))
	}
	for _, r := range recs {
		if !bytes.Equal(r.Data, want[r.Seq]) {
			t.Fatalf("record %d: wrong data after recovery", r.Seq)
		}
	}
	if got := j2.Last(); got != last+3 {
		t.Fatalf("Last() = %d after recovery, want %d", got, last+3)
	}
}

// An idle journal deletes its spare within a few sync rounds: a quiet
// session holds no extra file.
func TestSpareDeletedWhenIdle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 64 << 10, SyncInterval: 5 * time.Millisecond})
	for i := range 12 {
		j.Ack(appendT(t, j, KindStdout, 1, payload(i, 16<<10)))
	}
	if j.creates.Load() > 3 {
		t.Fatalf("%d segment files created: no spare was kept, the test proves nothing", j.creates.Load())
	}
	tstest.WaitFor(t, testTimeout, "spare deleted", func() bool {
		_, err := os.Stat(filepath.Join(dir, spareName))
		return os.IsNotExist(err)
	})
}
