package sessionhost

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/wire"
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

// Record batches to the agent go out through rawWrites' one writev, and
// arrive as the frames WriteOutputs made.
func TestRawWritesOutputs(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []wire.Output, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		wc := wire.NewConn(c, 0)
		var outs []wire.Output
		for {
			typ, p, err := wc.Read()
			if err != nil {
				got <- outs
				return
			}
			if typ == wire.TOutput {
				o, err := wire.DecodeOutput(p)
				if err != nil {
					got <- nil
					return
				}
				o.Data = bytes.Clone(o.Data)
				outs = append(outs, o)
			}
		}
	}()
	nc, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rw := rawWrites(nc)
	if _, ok := rw.(wire.VectorWriter); !ok {
		t.Fatalf("rawWrites of a unix socket is %T, without Writev", rw)
	}
	big := bytes.Repeat([]byte("x"), 300<<10)
	sent := []wire.Output{{Seq: 1, Kind: wire.KindStdout, Data: []byte("a")}, {Seq: 2, Kind: wire.KindStdout, Data: big}, {Seq: 3, Kind: wire.KindStderr, Data: []byte("e")}}
	if err := wire.NewConn(rw, 0).WriteOutputs(sent); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	outs := <-got
	if len(outs) != len(sent) {
		t.Fatalf("got %d frames, want %d", len(outs), len(sent))
	}
	for i := range sent {
		if outs[i].Seq != sent[i].Seq || outs[i].Kind != sent[i].Kind || !bytes.Equal(outs[i].Data, sent[i].Data) {
			t.Fatalf("frame %d: seq %d kind %v %d bytes, want seq %d kind %v %d bytes", i, outs[i].Seq, outs[i].Kind, len(outs[i].Data), sent[i].Seq, sent[i].Kind, len(sent[i].Data))
		}
	}
}
