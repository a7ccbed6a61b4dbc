package journal

import (
	"context"
	"testing"
)

// BenchmarkAppend32K measures appending 32 KiB stdout records, acking as it
// goes so the journal stays small.
func BenchmarkAppend32K(b *testing.B) {
	j := openT(b, Options{MaxBytes: 64 << 20})
	data := payload(1, 32<<10)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		seq, err := j.Append(ctx, KindStdout, 1, data)
		if err != nil {
			b.Fatal(err)
		}
		j.Ack(seq)
	}
}

// BenchmarkAppendReadAck measures a writer and a concurrent reader/acker
// moving 32 KiB records through a 64 MiB Block-mode journal.
func BenchmarkAppendReadAck(b *testing.B) {
	j := openT(b, Options{MaxBytes: 64 << 20, Mode: Block})
	data := payload(1, 32<<10)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()

	done := make(chan error, 1)
	go func() {
		var after uint64
		for after < uint64(b.N) {
			if err := j.Wait(ctx, after); err != nil {
				done <- err
				return
			}
			recs, err := j.Read(after, 1<<20)
			if err != nil {
				done <- err
				return
			}
			after = recs[len(recs)-1].Seq
			j.Ack(after)
		}
		done <- nil
	}()
	for i := 0; i < b.N; i++ {
		if _, err := j.Append(ctx, KindStdout, 1, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
