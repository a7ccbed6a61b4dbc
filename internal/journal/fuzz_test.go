package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendRecord(nil, Record{Seq: 1, Kind: KindStdout, Cmd: 2, Data: []byte("hello")}))
	f.Add(AppendRecord(nil, Record{Seq: 1 << 60, Kind: KindDropped, Data: []byte{0, 0, 0, 0, 0, 0, 1, 0}}))
	f.Add(AppendRecord(AppendRecord(nil, Record{Seq: 7, Kind: KindExit}), Record{Seq: 8}))
	f.Add([]byte{recordMagic, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := DecodeRecord(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error", n)
			}
			if !errors.Is(err, ErrShortRecord) && !errors.Is(err, ErrBadMagic) &&
				!errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrBadCRC) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if n < HeaderSize || n > len(b) || n != EncodedSize(len(r.Data)) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if re := AppendRecord(nil, r); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", re, b[:n])
		}
	})
}

func FuzzOpenSegment(f *testing.F) {
	var valid []byte
	for i := uint64(1); i <= 3; i++ {
		valid = AppendRecord(valid, Record{Seq: i, Kind: KindStdout, Data: payload(int(i), 10)})
	}
	f.Add([]byte{}, uint64(1))
	f.Add(valid, uint64(1))
	f.Add(valid, uint64(2))
	f.Add(valid[:len(valid)-3], uint64(1))
	f.Add(append(bytes.Clone(valid), 0xA7, 0, 0), uint64(1))
	f.Add(valid, uint64(0))
	f.Add(AppendRecord(nil, Record{Seq: ^uint64(0), Kind: KindStdout}), ^uint64(0))
	f.Add(AppendRecord(nil, Record{Seq: MaxSeq - 1, Kind: KindStdout}), uint64(MaxSeq-1))
	f.Add(AppendRecord(nil, Record{Seq: MaxSeq, Kind: KindStdout}), uint64(MaxSeq))
	f.Fuzz(func(t *testing.T, data []byte, first uint64) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(first)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := Open(Options{Dir: dir, SegmentBytes: 64})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		last := j.Last()
		recs := readAll(t, j, 0, 100)
		if len(recs) > 0 && (recs[0].Seq != j.First() || recs[len(recs)-1].Seq != last) {
			t.Fatalf("records %d..%d, First %d Last %d", recs[0].Seq, recs[len(recs)-1].Seq, j.First(), last)
		}
		seq, err := j.Append(t.Context(), KindStdout, 0, []byte("after"))
		if last >= MaxSeq-1 {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Append at seq %d = %v", last, err)
			}
			return
		}
		if err != nil || seq != last+1 {
			t.Fatalf("Append = %d, %v; want %d", seq, err, last+1)
		}
		recs, err = j.Read(last, 0)
		if err != nil || len(recs) != 1 || string(recs[0].Data) != "after" {
			t.Fatalf("Read after append: %v %v", recs, err)
		}
	})
}
