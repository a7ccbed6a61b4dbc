package sessionhost

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/runspace"
)

func sinkJournal(t *testing.T) *journal.Journal {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(t.TempDir(), "j"), MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func sinkRecords(t *testing.T, j *journal.Journal) []journal.Record {
	t.Helper()
	var all []journal.Record
	var after uint64
	for {
		recs, err := j.ReadRetained(after, 4<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		for _, r := range recs {
			all = append(all, journal.Record{Seq: r.Seq, Kind: r.Kind, Cmd: r.Cmd, Data: append([]byte(nil), r.Data...)})
			after = r.Seq
		}
	}
}

func big(i, n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(i*131 + k*7)
	}
	return b
}

// One writer alternating large stdout writes (journalled straight from its
// buffer) and small stderr ones (coalesced by the flusher): the journal
// holds both streams exactly, in the order they were written.
func TestOutputSinkOrderAcrossStreams(t *testing.T) {
	j := sinkJournal(t)
	s := newOutputSink(context.Background(), j, 1)
	out, errw := s.writer(journal.KindStdout), s.writer(journal.KindStderr)
	var want bytes.Buffer // stdout bytes then a marker per stderr write, in order
	for i := 0; i < 40; i++ {
		n := 64<<10 + i*9000 // from sinkDirect to beyond wire.MaxChunk
		b := big(i, n)
		if _, err := out.Write(b); err != nil {
			t.Fatal(err)
		}
		want.Write(b)
		e := fmt.Sprintf("<e%d>", i)
		if _, err := errw.Write([]byte(e)); err != nil {
			t.Fatal(err)
		}
		want.WriteString(e)
	}
	if err := s.wait(); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, r := range sinkRecords(t, j) {
		if r.Cmd != 1 || (r.Kind != journal.KindStdout && r.Kind != journal.KindStderr) {
			t.Fatalf("record %d: kind %v cmd %d", r.Seq, r.Kind, r.Cmd)
		}
		got.Write(r.Data)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("journal holds %d bytes of output, not the %d written in that order", got.Len(), want.Len())
	}
}

// Two writers at once, one of large writes and one of small: each stream
// is exact.
func TestOutputSinkConcurrentStreams(t *testing.T) {
	j := sinkJournal(t)
	s := newOutputSink(context.Background(), j, 2)
	var wantOut, wantErr bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		w := s.writer(journal.KindStdout)
		for i := 0; i < 60; i++ {
			b := big(i, 100<<10+i)
			w.Write(b)
			wantOut.Write(b)
		}
	}()
	go func() {
		defer wg.Done()
		w := s.writer(journal.KindStderr)
		for i := 0; i < 3000; i++ {
			e := fmt.Sprintf("line %d\n", i)
			w.Write([]byte(e))
			wantErr.WriteString(e)
		}
	}()
	wg.Wait()
	if err := s.wait(); err != nil {
		t.Fatal(err)
	}
	var gotOut, gotErr bytes.Buffer
	for _, r := range sinkRecords(t, j) {
		if r.Kind == journal.KindStdout {
			gotOut.Write(r.Data)
		} else {
			gotErr.Write(r.Data)
		}
	}
	if !bytes.Equal(gotOut.Bytes(), wantOut.Bytes()) || !bytes.Equal(gotErr.Bytes(), wantErr.Bytes()) {
		t.Fatalf("stdout %d of %d bytes, stderr %d of %d bytes, or not in order", gotOut.Len(), wantOut.Len(), gotErr.Len(), wantErr.Len())
	}
}

// writeAllFrom writes b with WriteFrom, as pipe reads that may each take
// part of it.
func writeAllFrom(t *testing.T, w *journalWriter, b []byte) {
	t.Helper()
	for len(b) > 0 {
		n, err := w.WriteFrom(func(p []byte) int { return copy(p, b) })
		if err != nil || n == 0 {
			t.Fatalf("WriteFrom: %d, %v with %d bytes to go", n, err, len(b))
		}
		b = b[n:]
	}
}

// Bulk output read into the journal (WriteFrom) keeps its order with the
// small writes of the other stream that wait for the flusher, and a
// stream alone never needs the writer's own buffer.
func TestOutputSinkWriteFrom(t *testing.T) {
	j := sinkJournal(t)
	s := newOutputSink(context.Background(), j, 1)
	out, errw := s.writer(journal.KindStdout), s.writer(journal.KindStderr)
	var want bytes.Buffer
	for i := 0; i < 40; i++ {
		b := big(i, 10000+i*6000) // up to wire.MaxChunk
		writeAllFrom(t, out, b)
		want.Write(b)
	}
	if out.scratch != nil {
		t.Fatal("stdout alone was copied through the writer's buffer, not read into the journal")
	}
	for i := 0; i < 40; i++ {
		e := fmt.Sprintf("<e%d>", i)
		if _, err := errw.Write([]byte(e)); err != nil {
			t.Fatal(err)
		}
		want.WriteString(e)
		b := big(i, 20000+i*5000)
		writeAllFrom(t, out, b)
		want.Write(b)
	}
	if err := s.wait(); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, r := range sinkRecords(t, j) {
		got.Write(r.Data)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("journal holds %d bytes of output, not the %d written in that order", got.Len(), want.Len())
	}
}

// A program writing 4 KiB at a time into a pipe read straight into the
// journal still makes records of many writes, as the flusher made them:
// not a record (and frames to the client) per write.
func TestOutputSinkWriteFromCoalescesSmallWrites(t *testing.T) {
	j := sinkJournal(t)
	s := newOutputSink(context.Background(), j, 1)
	out := s.writer(journal.KindStdout)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	const total, piece = 16 << 20, 4 << 10
	go func() {
		b := bytes.Repeat([]byte{'x'}, piece)
		for n := 0; n < total; n += piece {
			if _, err := w.Write(b); err != nil {
				break
			}
		}
		w.Close()
	}()
	if _, werr := runspace.CopyPipeInto(r, out); werr != nil {
		t.Fatal(werr)
	}
	r.Close()
	if err := s.wait(); err != nil {
		t.Fatal(err)
	}
	recs := sinkRecords(t, j)
	n := 0
	for _, rec := range recs {
		n += len(rec.Data)
	}
	if n != total {
		t.Fatalf("%d bytes journalled, want %d", n, total)
	}
	if avg := n / len(recs); avg < 8*piece {
		t.Fatalf("%d records of %d bytes on average for writes of %d; want them gathered (at least %d)", len(recs), avg, piece, 8*piece)
	}
}

// Two programs writing to one stream at once (a builtin session's
// `a & b`: a copier each, one writer) while the other stream has writes
// waiting: every byte of both arrives, none overwritten.
func TestOutputSinkWriteFromConcurrentCopiers(t *testing.T) {
	j := sinkJournal(t)
	s := newOutputSink(context.Background(), j, 1)
	out, errw := s.writer(journal.KindStdout), s.writer(journal.KindStderr)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := 0; i < 200; i++ {
				writeAllFrom(t, out, bytes.Repeat([]byte{byte('a' + g)}, 10000))
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < 2000; i++ {
			errw.Write([]byte("e"))
		}
	})
	wg.Wait()
	if err := s.wait(); err != nil {
		t.Fatal(err)
	}
	counts := map[byte]int{}
	for _, r := range sinkRecords(t, j) {
		if r.Kind == journal.KindStdout {
			for _, b := range r.Data {
				counts[b]++
			}
		}
	}
	if counts['a'] != 200*10000 || counts['b'] != 200*10000 || len(counts) != 2 {
		t.Fatalf("stdout holds %d a's and %d b's (%d kinds of byte); want %d of each", counts['a'], counts['b'], len(counts), 200*10000)
	}
}
