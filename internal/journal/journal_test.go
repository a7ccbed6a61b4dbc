package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAppendReadOrder(t *testing.T) {
	tests := []struct {
		name     string
		segBytes int64
		n        int
		size     func(i int) int
		maxRead  int
	}{
		{"one segment", 1 << 20, 50, func(i int) int { return i }, 1 << 20},
		{"many segments small reads", 256, 200, func(i int) int { return i % 97 }, 100},
		{"record per segment", 1, 40, func(i int) int { return 10 }, 0},
		{"big records", 64 << 10, 20, func(i int) int { return 30000 + i }, 50000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := openT(t, Options{SegmentBytes: tt.segBytes})
			buf := make([]byte, 0, 1<<16)
			for i := 0; i < tt.n; i++ {
				data := append(buf[:0], payload(i, tt.size(i))...)
				seq := appendT(t, j, KindStdout, uint32(i), data)
				if seq != uint64(i+1) {
					t.Fatalf("seq %d, want %d", seq, i+1)
				}
				clear(data) // Append must have copied
			}
			if j.Last() != uint64(tt.n) || j.First() != 1 {
				t.Fatalf("First/Last = %d/%d", j.First(), j.Last())
			}
			for _, after := range []uint64{0, 1, uint64(tt.n / 2), uint64(tt.n - 1)} {
				recs := readAll(t, j, after, tt.maxRead)
				if len(recs) != tt.n-int(after) {
					t.Fatalf("after %d: %d records", after, len(recs))
				}
				for k, r := range recs {
					i := int(after) + k
					if r.Seq != uint64(i+1) || r.Kind != KindStdout || r.Cmd != uint32(i) || !bytes.Equal(r.Data, payload(i, tt.size(i))) {
						t.Fatalf("record %d mismatch: seq %d cmd %d len %d", i, r.Seq, r.Cmd, len(r.Data))
					}
				}
			}
			if recs, err := j.Read(uint64(tt.n), 1<<20); err != nil || len(recs) != 0 {
				t.Fatalf("Read at end: %d records, %v", len(recs), err)
			}
		})
	}
}

func TestReadMaxBytes(t *testing.T) {
	j := openT(t, Options{SegmentBytes: 1 << 20})
	for i := 0; i < 10; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 100))
	}
	rec := EncodedSize(100)
	tests := []struct {
		maxBytes, want int
	}{
		{0, 1}, {1, 1}, {rec, 1}, {rec + 1, 1}, {2 * rec, 2}, {5*rec + 3, 5}, {1 << 20, 10},
	}
	for _, tt := range tests {
		recs, err := j.Read(0, tt.maxBytes)
		if err != nil || len(recs) != tt.want {
			t.Errorf("Read(0, %d): %d records, %v; want %d", tt.maxBytes, len(recs), err, tt.want)
		}
	}
}

func TestAppendTooLarge(t *testing.T) {
	j := openT(t, Options{})
	if _, err := j.Append(context.Background(), KindStdout, 0, make([]byte, MaxDataBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if seq := appendT(t, j, KindStdout, 0, make([]byte, MaxDataBytes)); seq != 1 {
		t.Fatalf("seq = %d", seq)
	}
}

func TestAckDeletesSegments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 1000})
	rec := EncodedSize(100)
	perSeg := 1000 / rec // records per segment: a record that would overflow it starts a new one
	for i := 0; i < 5*perSeg; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 100))
	}
	if got := len(segFiles(t, dir)); got != 5 {
		t.Fatalf("%d segments, want 5: %v", got, segFiles(t, dir))
	}
	if j.Unacked() != int64(5*perSeg*rec) {
		t.Fatalf("Unacked = %d", j.Unacked())
	}
	j.Ack(uint64(perSeg) - 1) // not all of the first segment
	if got := len(segFiles(t, dir)); got != 5 {
		t.Fatalf("partial ack deleted a segment: %v", segFiles(t, dir))
	}
	if j.Unacked() != int64((4*perSeg+1)*rec) {
		t.Fatalf("Unacked = %d", j.Unacked())
	}
	j.Ack(uint64(2*perSeg + 1))
	if got := segFiles(t, dir); len(got) != 3 || got[0] != segName(uint64(2*perSeg+1)) {
		t.Fatalf("segments after ack: %v", got)
	}
	if j.First() != uint64(2*perSeg+2) || j.Acked() != uint64(2*perSeg+1) {
		t.Fatalf("First %d Acked %d", j.First(), j.Acked())
	}
	// Acknowledged records are not read back even though still on disk.
	if recs := readAll(t, j, 0, 0); len(recs) != 3*perSeg-1 || recs[0].Seq != uint64(2*perSeg+2) {
		t.Fatalf("read %d records from %d", len(recs), recs[0].Seq)
	}
	j.Ack(1) // never moves back
	if j.Acked() != uint64(2*perSeg+1) {
		t.Fatalf("ack moved back to %d", j.Acked())
	}
	// Acking everything keeps the segment being appended to until it is full.
	j.Ack(1 << 40)
	if j.Acked() != j.Last() || j.Unacked() != 0 || j.First() != j.Last()+1 {
		t.Fatalf("Acked %d Last %d First %d Unacked %d", j.Acked(), j.Last(), j.First(), j.Unacked())
	}
	if got := segFiles(t, dir); len(got) != 1 {
		t.Fatalf("segments after full ack: %v", got)
	}
	for range perSeg + 1 {
		appendT(t, j, KindStdout, 0, payload(0, 100))
	}
	if got := segFiles(t, dir); len(got) != 2 || got[0] != segName(uint64(5*perSeg+1)) {
		t.Fatalf("segments after append: %v", got)
	}
}

func TestReadBelowFirst(t *testing.T) {
	j := openT(t, Options{SegmentBytes: 1})
	for i := 0; i < 10; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 10))
	}
	j.Ack(4)
	if j.First() != 5 {
		t.Fatalf("First = %d", j.First())
	}
	recs := readAll(t, j, 0, 1<<20)
	if len(recs) != 6 || recs[0].Seq != 5 {
		t.Fatalf("got %d records starting at %d", len(recs), recs[0].Seq)
	}
}

func TestBlockMode(t *testing.T) {
	rec := int64(EncodedSize(100))
	j := openT(t, Options{MaxBytes: 3 * rec, Mode: Block, SegmentBytes: 1})
	for i := 0; i < 3; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 100))
	}
	if j.Unacked() != 3*rec {
		t.Fatalf("Unacked = %d", j.Unacked())
	}

	// Blocks until an ack frees space.
	res := startAppend(context.Background(), j, KindStdout, payload(3, 100))
	waitBlocked(t, j, 1)
	j.Ack(1)
	if r := recv(t, res, "Append after Ack"); r.err != nil || r.seq != 4 {
		t.Fatalf("Append = %+v", r)
	}

	// Honours ctx while blocked.
	ctx, cancel := context.WithCancel(context.Background())
	res = startAppend(ctx, j, KindStdout, payload(4, 100))
	waitBlocked(t, j, 1)
	cancel()
	if r := recv(t, res, "canceled Append"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Append = %+v", r)
	}
	if j.Last() != 4 {
		t.Fatalf("canceled Append wrote a record: Last = %d", j.Last())
	}

	// An oversized record fits into a fully acknowledged journal.
	j.Ack(4)
	big := payload(9, int(4*rec))
	if seq := appendT(t, j, KindStdout, 0, big); seq != 5 {
		t.Fatalf("seq = %d", seq)
	}
	recs := readAll(t, j, 4, 0)
	if len(recs) != 1 || !bytes.Equal(recs[0].Data, big) {
		t.Fatalf("bad big record")
	}
}

func TestDropMode(t *testing.T) {
	rec := EncodedSize(100)
	// Segments hold 2 records each; MaxBytes allows 6 records.
	j := openT(t, Options{MaxBytes: int64(6 * rec), Mode: Drop, SegmentBytes: int64(2 * rec)})
	for i := 0; i < 6; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 100))
	}
	if j.DroppedBytes() != 0 {
		t.Fatal("dropped too early")
	}
	// The 7th record (plus a KindDropped record) needs the oldest segment
	// (records 1-2) gone.
	seq := appendT(t, j, KindStderr, 0, payload(6, 100))
	if seq != 8 {
		t.Fatalf("seq = %d, want 8 (after a KindDropped record)", seq)
	}
	if j.DroppedBytes() != 200 {
		t.Fatalf("DroppedBytes = %d", j.DroppedBytes())
	}
	if j.First() != 3 {
		t.Fatalf("First = %d", j.First())
	}
	recs := readAll(t, j, 0, 0)
	if recs[0].Seq != 3 || len(recs) != 6 {
		t.Fatalf("records from %d, %d of them", recs[0].Seq, len(recs))
	}
	if n := droppedCount(t, recs[4]); recs[4].Seq != 7 || n != 200 {
		t.Fatalf("dropped record seq %d count %d", recs[4].Seq, n)
	}
	if j.Unacked() > int64(6*rec) {
		t.Fatalf("Unacked %d above MaxBytes", j.Unacked())
	}

}

func TestDropCountsOnlyUnackedOutput(t *testing.T) {
	// Only unacknowledged stdout/stderr payload counts as dropped.
	rec := EncodedSize(100)
	j := openT(t, Options{MaxBytes: int64(4 * rec), Mode: Drop, SegmentBytes: int64(2 * rec)})
	for i, k := range []Kind{KindStart, KindStdout, KindStderr, KindExit} {
		appendT(t, j, k, 1, payload(i, 100)) // segments [1 2] [3 4]
	}
	j.Ack(1)
	// Needs segment [1 2] gone: only record 2 (stdout) was unacked.
	if seq := appendT(t, j, KindInfo, 1, payload(4, 150)); seq != 6 {
		t.Fatalf("seq = %d", seq)
	}
	// Needs segment [3 4] gone: stderr counts, exit does not.
	if seq := appendT(t, j, KindInfo, 1, payload(5, 150)); seq != 8 {
		t.Fatalf("seq = %d", seq)
	}
	recs := readAll(t, j, 0, 0)
	want := []struct {
		seq     uint64
		kind    Kind
		dropped uint64
	}{{5, KindDropped, 100}, {6, KindInfo, 0}, {7, KindDropped, 100}, {8, KindInfo, 0}}
	if len(recs) != len(want) {
		t.Fatalf("%d records", len(recs))
	}
	for i, w := range want {
		r := recs[i]
		if r.Seq != w.seq || r.Kind != w.kind || (w.kind == KindDropped && droppedCount(t, r) != w.dropped) {
			t.Errorf("record %d: seq %d kind %v", i, r.Seq, r.Kind)
		}
	}
	if j.DroppedBytes() != 200 {
		t.Fatalf("DroppedBytes = %d", j.DroppedBytes())
	}
}

func TestDropCarriesDroppedCounts(t *testing.T) {
	// One record per segment and room for two: every append drops, and
	// KindDropped records get dropped themselves. The counts must add up.
	rec := EncodedSize(50)
	j := openT(t, Options{MaxBytes: int64(droppedRecordSize + rec), Mode: Drop, SegmentBytes: 1})
	const n = 20
	for i := 0; i < n; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 50))
	}
	recs := readAll(t, j, 0, 0)
	var reported, delivered uint64
	for _, r := range recs {
		switch r.Kind {
		case KindDropped:
			reported += droppedCount(t, r)
		case KindStdout:
			delivered += uint64(len(r.Data))
		}
	}
	if reported != j.DroppedBytes() || reported+delivered != n*50 {
		t.Fatalf("reported %d + delivered %d != %d (DroppedBytes %d)", reported, delivered, n*50, j.DroppedBytes())
	}
}

func TestWait(t *testing.T) {
	j := openT(t, Options{})
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- j.Wait(ctx, 0) }()
	waitWaiting(t, j, 1)
	appendT(t, j, KindInfo, 0, nil)
	if err := recv(t, done, "Wait"); err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- j.Wait(cctx, 1) }()
	waitWaiting(t, j, 1)
	cancel()
	if err := recv(t, done, "canceled Wait"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestSetLimitsLive(t *testing.T) {
	rec := int64(EncodedSize(100))
	j := openT(t, Options{MaxBytes: 2 * rec, Mode: Block, SegmentBytes: 1})
	appendT(t, j, KindStdout, 0, payload(0, 100))
	appendT(t, j, KindStdout, 0, payload(1, 100))

	res := startAppend(context.Background(), j, KindStdout, payload(2, 100))
	waitBlocked(t, j, 1)
	j.SetLimits(3*rec, Block) // more room releases the blocked Append
	if r := recv(t, res, "Append after SetLimits"); r.err != nil || r.seq != 3 {
		t.Fatalf("Append = %+v", r)
	}

	res = startAppend(context.Background(), j, KindStdout, payload(3, 100))
	waitBlocked(t, j, 1)
	j.SetLimits(0, Drop) // switching to Drop releases it too, by dropping
	r := recv(t, res, "Append after switch to Drop")
	// 1 and 2 had to go to make room for 4 and its KindDropped record.
	if r.err != nil || r.seq != 5 || j.DroppedBytes() != 200 || j.First() != 3 {
		t.Fatalf("Append = %+v, dropped %d, first %d", r, j.DroppedBytes(), j.First())
	}

	j.SetLimits(rec, Drop) // lower limit applies to the next Append
	appendT(t, j, KindStdout, 0, payload(5, 100))
	if j.Unacked() > rec+droppedRecordSize || j.DroppedBytes() != 400 {
		t.Fatalf("Unacked %d, dropped %d", j.Unacked(), j.DroppedBytes())
	}
}

func TestCloseWakesWaiters(t *testing.T) {
	rec := int64(EncodedSize(10))
	j := openT(t, Options{MaxBytes: rec, Mode: Block})
	appendT(t, j, KindStdout, 0, payload(0, 10))

	waits := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { waits <- j.Wait(context.Background(), 1) }()
	}
	res := startAppend(context.Background(), j, KindStdout, payload(1, 10))
	waitWaiting(t, j, 3)
	waitBlocked(t, j, 1)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := recv(t, waits, "Wait"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait = %v", err)
		}
	}
	if r := recv(t, res, "Append"); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("Append = %+v", r)
	}
	if _, err := j.Append(context.Background(), KindStdout, 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if _, err := j.Read(0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
	if err := j.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir})
	appendT(t, j, KindStdout, 0, []byte("x"))
	if err := j.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir still there: %v", err)
	}
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "j")
	j := openT(t, Options{Dir: dir})
	appendT(t, j, KindStdout, 0, []byte("x"))
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	check := func(path string, want os.FileMode) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^want != 0 {
			t.Errorf("%s: mode %v, want at most %v", path, fi.Mode().Perm(), want)
		}
	}
	check(dir, 0o700)
	check(filepath.Join(dir, segName(1)), 0o600)
	check(filepath.Join(dir, ackFileName), 0o600)
}
