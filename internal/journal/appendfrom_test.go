package journal

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// appendFromT appends data through AppendFrom, as a pipe read would put
// it, and returns the record's seq and the memory read was given.
func appendFromT(t testing.TB, j *Journal, kind Kind, max int, data []byte) (uint64, []byte) {
	t.Helper()
	var got []byte
	seq, n, err := j.AppendFrom(context.Background(), kind, 1, max, func(p []byte) int {
		got = p
		return copy(p, data)
	})
	if err != nil {
		t.Fatalf("AppendFrom: %v", err)
	}
	if n != min(len(data), len(got)) {
		t.Fatalf("AppendFrom: n = %d, read put %d", n, min(len(data), len(got)))
	}
	return seq, got
}

// What read puts into AppendFrom's buffer is the record: a reader of the
// tail gets that very memory (no copy), and the files get it, checksummed,
// when the journal is closed and opened again.
func TestAppendFromInPlace(t *testing.T) {
	const size = 256 << 10
	dir := t.TempDir()
	j := openT(t, Options{Dir: dir, SegmentBytes: 4 << 20, SyncInterval: time.Hour})
	var given [][]byte
	for i := range 10 {
		seq, p := appendFromT(t, j, KindStdout, size, payload(i, size))
		if seq != uint64(i+1) {
			t.Fatalf("record %d: seq %d", i+1, seq)
		}
		given = append(given, p)
	}
	recs, done, err := j.Borrow(0, 64<<20, false)
	if err != nil || len(recs) != 10 {
		t.Fatalf("Borrow: %d records, %v", len(recs), err)
	}
	for i, r := range recs {
		if !bytes.Equal(r.Data, payload(i, size)) || r.Kind != KindStdout || r.Cmd != 1 {
			t.Fatalf("record %d: kind %v cmd %d, data equal %v", r.Seq, r.Kind, r.Cmd, bytes.Equal(r.Data, payload(i, size)))
		}
		if &r.Data[0] != &given[i][0] {
			t.Fatalf("record %d: Data is not the memory read was given (copied)", r.Seq)
		}
	}
	done()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, Options{Dir: dir, SyncInterval: time.Hour})
	back := readAll(t, j, 0, 1<<20)
	if len(back) != 10 {
		t.Fatalf("reopened: %d records, want 10", len(back))
	}
	for i, r := range back {
		if !bytes.Equal(r.Data, payload(i, size)) {
			t.Fatalf("reopened: record %d differs", r.Seq)
		}
	}
}

// A read that finds nothing (an empty pipe) appends nothing and uses no
// sequence number, also where the record would have started a segment or
// carried the announcement of a drop; both still come with the next record.
func TestAppendFromNothingRead(t *testing.T) {
	const size = 40 << 10
	dir := t.TempDir()
	j := openT(t, Options{Dir: dir, MaxBytes: 128 << 10, SegmentBytes: 64 << 10, Mode: Drop, SyncInterval: time.Hour})
	nothing := func(p []byte) int { return 0 }
	for i := range 6 { // past a roll and past MaxBytes: segments dropped
		appendT(t, j, KindStdout, 1, payload(i, size))
		if seq, n, err := j.AppendFrom(context.Background(), KindStdout, 1, size, nothing); seq != 0 || n != 0 || err != nil {
			t.Fatalf("AppendFrom reading nothing: (%d, %d, %v), want (0, 0, nil)", seq, n, err)
		}
		if last := j.Last(); last < uint64(i+1) {
			t.Fatalf("Last = %d after %d records", last, i+1)
		}
	}
	last := j.Last()
	seq, _ := appendFromT(t, j, KindStdout, size, payload(99, size))
	if seq != last+1 && seq != last+2 {
		t.Fatalf("seq %d after Last %d", seq, last)
	}
	recs := readAll(t, j, 0, 1<<20)
	var dropped, out int
	for i, r := range recs {
		if i > 0 && r.Seq != recs[i-1].Seq+1 {
			t.Fatalf("seq %d after %d: a gap", r.Seq, recs[i-1].Seq)
		}
		switch r.Kind {
		case KindDropped:
			dropped++
			if droppedCount(t, r) == 0 {
				t.Fatal("KindDropped record announces 0 bytes")
			}
		case KindStdout:
			out++
		}
	}
	if dropped == 0 || recs[len(recs)-1].Seq != seq || !bytes.Equal(recs[len(recs)-1].Data, payload(99, size)) {
		t.Fatalf("%d drop announcements, last record %d (want %d with its data)", dropped, recs[len(recs)-1].Seq, seq)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, Options{Dir: dir, MaxBytes: 128 << 10, SegmentBytes: 64 << 10, Mode: Drop, SyncInterval: time.Hour})
	if back := readAll(t, j, 0, 1<<20); len(back) != len(recs) {
		t.Fatalf("reopened: %d records, want %d", len(back), len(recs))
	}
}

// AppendFrom offers read the rest of the tail's current chunk when that is
// less than asked for but worth reading into, so that bulk output fills
// the arrays instead of leaving their ends unused; a rest too small for
// that starts a new chunk with all that was asked.
func TestAppendFromFillsChunk(t *testing.T) {
	const max = 256 << 10
	j := openT(t, Options{SegmentBytes: 4 << 20, SyncInterval: time.Hour})
	short := 100 << 10
	_, p := appendFromT(t, j, KindStdout, max, payload(0, short))
	if len(p) != max {
		t.Fatalf("first offer %d bytes, want %d", len(p), max)
	}
	used := HeaderSize + short
	for i := 1; ; i++ {
		room := tailChunkBytes - used - HeaderSize
		_, p := appendFromT(t, j, KindStdout, max, bytes.Repeat([]byte{byte(i)}, max))
		switch {
		case room >= max:
			if len(p) != max {
				t.Fatalf("offer %d: %d bytes with %d left, want %d", i, len(p), room, max)
			}
		case room >= minInPlace:
			if len(p) != room {
				t.Fatalf("offer %d: %d bytes, want the chunk's rest %d", i, len(p), room)
			}
		default:
			t.Fatalf("offer %d: the chunk's rest %d was not offered", i, room)
		}
		used += HeaderSize + len(p)
		if used == tailChunkBytes {
			break
		}
	}
	j.mu.Lock()
	allocs := j.tailAllocs
	j.mu.Unlock()
	if allocs != 1 {
		t.Fatalf("%d arrays for one chunk's worth", allocs)
	}
}

// Appends of another stream while AppendFrom's read runs wait for it and
// follow its record; every record is whole and in sequence.
func TestAppendFromConcurrent(t *testing.T) {
	j := openT(t, Options{SegmentBytes: 256 << 10, SyncInterval: time.Hour})
	var wg sync.WaitGroup
	const n = 200
	wg.Go(func() {
		for i := range n {
			data := payload(i, 30<<10)
			if _, _, err := j.AppendFrom(context.Background(), KindStdout, 1, 64<<10, func(p []byte) int {
				time.Sleep(10 * time.Microsecond) // a read syscall
				return copy(p, data)
			}); err != nil {
				t.Errorf("AppendFrom: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range n {
			if _, err := j.Append(context.Background(), KindStderr, 1, payload(i, 100)); err != nil {
				t.Errorf("Append: %v", err)
				return
			}
		}
	})
	wg.Wait()
	recs := readAll(t, j, 0, 1<<20)
	if len(recs) != 2*n {
		t.Fatalf("%d records, want %d", len(recs), 2*n)
	}
	var outs, errs int
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i+1, r.Seq)
		}
		if r.Kind == KindStdout {
			if !bytes.Equal(r.Data, payload(outs, 30<<10)) {
				t.Fatalf("stdout record %d differs", outs)
			}
			outs++
		} else {
			if !bytes.Equal(r.Data, payload(errs, 100)) {
				t.Fatalf("stderr record %d differs", errs)
			}
			errs++
		}
	}
}

func TestAppendFromBadMax(t *testing.T) {
	j := openT(t, Options{})
	for _, max := range []int{0, -1, MaxDataBytes + 1} {
		called := false
		_, _, err := j.AppendFrom(context.Background(), KindStdout, 1, max, func(p []byte) int { called = true; return 0 })
		if !errors.Is(err, ErrTooLarge) || called {
			t.Fatalf("max %d: err %v, read called %v; want ErrTooLarge without a read", max, err, called)
		}
	}
}
