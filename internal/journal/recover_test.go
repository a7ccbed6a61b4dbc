package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-sh/tether/internal/tstest"
)

// fill appends n stdout records of 100 bytes and returns the journal's dir.
func fill(t *testing.T, opts Options, n int) (*Journal, string) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "j")
	}
	j := openT(t, opts)
	for i := 0; i < n; i++ {
		appendT(t, j, KindStdout, uint32(i), payload(i, 100))
	}
	return j, opts.Dir
}

func lastSeg(t *testing.T, dir string) string {
	segs := segFiles(t, dir)
	return filepath.Join(dir, segs[len(segs)-1])
}

func TestReopenRecovers(t *testing.T) {
	rec := int64(EncodedSize(100))
	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		wantLast uint64 // last good record after recovery
	}{
		{"clean", func(t *testing.T, dir string) {}, 20},
		{"torn tail", func(t *testing.T, dir string) {
			p := lastSeg(t, dir)
			os.Truncate(p, fileSize(t, p)-3)
		}, 19},
		{"torn header", func(t *testing.T, dir string) {
			p := lastSeg(t, dir)
			os.Truncate(p, fileSize(t, p)-rec+5)
		}, 19},
		{"bad crc in last record", func(t *testing.T, dir string) {
			corrupt(t, lastSeg(t, dir), fileSize(t, lastSeg(t, dir))-10)
		}, 19},
		{"bad crc in earlier record of last segment", func(t *testing.T, dir string) {
			corrupt(t, lastSeg(t, dir), rec+HeaderSize+1) // 2nd record of segment 17-20
		}, 17},
		{"bad magic mid journal drops later segments", func(t *testing.T, dir string) {
			corrupt(t, filepath.Join(dir, segName(9)), 0)
		}, 8},
		{"garbage after tail", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(lastSeg(t, dir), os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte("garbage garbage garbage garbage"))
			f.Close()
		}, 20},
		{"missing middle segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, segName(9)))
		}, 8},
		{"misnamed segment", func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, segName(17)), filepath.Join(dir, segName(18)))
		}, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Four records per segment: 1-4, 5-8, ..., 17-20.
			j, dir := fill(t, Options{SegmentBytes: 4 * rec}, 20)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir)

			j = openT(t, Options{Dir: dir, SegmentBytes: 4 * rec})
			if j.Last() != tt.wantLast || j.First() != 1 {
				t.Fatalf("First/Last = %d/%d, want 1/%d", j.First(), j.Last(), tt.wantLast)
			}
			recs := readAll(t, j, 0, 1000)
			if uint64(len(recs)) != tt.wantLast {
				t.Fatalf("%d records", len(recs))
			}
			for i, r := range recs {
				if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, payload(i, 100)) {
					t.Fatalf("record %d bad", i)
				}
			}
			// Numbering continues and the new records read back.
			for i := 0; i < 6; i++ {
				if seq := appendT(t, j, KindStderr, 0, []byte{byte(i)}); seq != tt.wantLast+1+uint64(i) {
					t.Fatalf("seq %d", seq)
				}
			}
			recs = readAll(t, j, tt.wantLast, 0)
			if len(recs) != 6 || recs[5].Data[0] != 5 {
				t.Fatalf("new records: %d", len(recs))
			}
			// And survive another reopen.
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, Options{Dir: dir})
			if j.Last() != tt.wantLast+6 {
				t.Fatalf("Last after second reopen = %d", j.Last())
			}
		})
	}
}

func corrupt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestReopenRestoresAck(t *testing.T) {
	rec := int64(EncodedSize(100))
	j, dir := fill(t, Options{SegmentBytes: 4 * rec}, 20)
	j.Ack(10)
	if err := j.Close(); err != nil { // Close persists the mark
		t.Fatal(err)
	}
	j = openT(t, Options{Dir: dir})
	if j.Acked() != 10 || j.First() != 11 || len(segFiles(t, dir)) != 3 || j.Last() != 20 || j.Unacked() != 10*rec {
		t.Fatalf("Acked %d First %d Last %d Unacked %d", j.Acked(), j.First(), j.Last(), j.Unacked())
	}

	// The background loop persists acks too.
	j.Ack(12)
	tstest.WaitFor(t, testTimeout, "ack file", func() bool {
		seq, ok, err := readAck(filepath.Join(dir, ackFileName))
		return err == nil && ok && seq == 12
	})
}

func TestReopenAllAckedContinuesNumbering(t *testing.T) {
	for _, appendAfter := range []bool{false, true} {
		j, dir := fill(t, Options{SegmentBytes: 1}, 5)
		j.Ack(5)
		if appendAfter {
			appendT(t, j, KindInfo, 0, nil) // 6
			j.Ack(6)
		}
		want := j.Last()
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, Options{Dir: dir})
		if j.Last() != want || j.First() != want+1 || j.Acked() != want || j.Unacked() != 0 {
			t.Fatalf("First %d Last %d Acked %d", j.First(), j.Last(), j.Acked())
		}
		if seq := appendT(t, j, KindInfo, 0, nil); seq != want+1 {
			t.Fatalf("seq = %d, want %d", seq, want+1)
		}
	}
}

func TestReopenBadAckFile(t *testing.T) {
	j, dir := fill(t, Options{SegmentBytes: 1}, 5)
	j.Ack(3)
	j.Close()
	os.WriteFile(filepath.Join(dir, ackFileName), []byte("nonsense nonsense"), 0o600)
	j = openT(t, Options{Dir: dir})
	// Unknown mark: everything retained is unacknowledged.
	if j.Acked() != 0 || j.First() != 4 || j.Last() != 5 {
		t.Fatalf("Acked %d First %d Last %d", j.Acked(), j.First(), j.Last())
	}
}

func TestReopenAckBeyondTornTail(t *testing.T) {
	// The client acked records that were then lost from a torn tail: the
	// numbering must not reuse their seqs.
	j, dir := fill(t, Options{SegmentBytes: 1 << 20}, 5)
	j.Ack(5)
	j.Sync()
	j.Close()
	os.WriteFile(filepath.Join(dir, segName(1)), nil, 0o600) // lose everything
	j = openT(t, Options{Dir: dir})
	if j.Last() != 5 || j.Acked() != 5 {
		t.Fatalf("Last %d Acked %d", j.Last(), j.Acked())
	}
}

func TestOpenIgnoresForeignFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	os.MkdirAll(filepath.Join(dir, "00000000000000000001x.seg"), 0o700)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hi"), 0o600)
	os.WriteFile(filepath.Join(dir, "1.seg"), []byte("hi"), 0o600)
	j := openT(t, Options{Dir: dir})
	appendT(t, j, KindInfo, 0, []byte("x"))
	j.Close()
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal(err)
	}
}
