package journal

import (
	"github.com/tether-sh/tether/internal/clock"

	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

func tailState(j *Journal) (fileReads int, tailBytes int64, chunks int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fileReads, j.tailBytes, len(j.tail)
}

// A reader that keeps up is served from memory: the records come back
// right even when the segment file under them is gone.
func TestTailServesRecentRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := openT(t, Options{Dir: dir, SegmentBytes: 64 << 10, SyncInterval: time.Hour})
	var after uint64
	for i := 0; i < 200; i++ {
		appendT(t, j, KindStdout, 7, payload(i, 1000+i))
		if i%3 == 0 {
			recs := readAll(t, j, after, 5000)
			for _, r := range recs {
				k := int(r.Seq) - 1
				if r.Cmd != 7 || r.Kind != KindStdout || !bytes.Equal(r.Data, payload(k, 1000+k)) {
					t.Fatalf("record %d differs", r.Seq)
				}
				after = r.Seq
			}
		}
	}
	if n, _, _ := tailState(j); n != 0 {
		t.Fatalf("%d reads went to the files", n)
	}
	// Empty the files: what is still in the tail reads the same.
	for _, f := range segFiles(t, dir) {
		if err := os.Truncate(filepath.Join(dir, f), 0); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, j, 150, 0)
	if len(recs) != 50 || recs[0].Seq != 151 || !bytes.Equal(recs[49].Data, payload(199, 1199)) {
		t.Fatalf("tail read after truncating the files: %d records", len(recs))
	}
}

// Acknowledged records leave memory; an idle, fully acknowledged journal
// holds no tail.
func TestTailFreedByAck(t *testing.T) {
	j := openT(t, Options{SegmentBytes: 64 << 10, SyncInterval: time.Hour})
	for i := 0; i < 100; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 30000))
	}
	if _, b, _ := tailState(j); b == 0 {
		t.Fatal("nothing in the tail after appending")
	}
	j.Ack(j.Last())
	if _, b, c := tailState(j); b != 0 || c != 0 {
		t.Fatalf("after acking everything the tail holds %d bytes in %d chunks", b, c)
	}
	// The chunk's free space is reused; reading still works.
	s := appendT(t, j, KindStderr, 1, []byte("after"))
	recs := readAll(t, j, s-1, 0)
	if len(recs) != 1 || string(recs[0].Data) != "after" || recs[0].Kind != KindStderr {
		t.Fatalf("read after re-append: %+v", recs)
	}
	if n, _, _ := tailState(j); n != 0 {
		t.Fatalf("%d reads went to the files", n)
	}
}

// The tail is bounded: older unacknowledged records are read from the
// files, newer ones from memory, and every record comes back right.
func TestTailBounded(t *testing.T) {
	j := openT(t, Options{MaxBytes: 4 * tailMaxBytes, SegmentBytes: 1 << 20, SyncInterval: time.Hour})
	n := 2 * tailMaxBytes / 100000
	for i := 0; i < n; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 100000))
	}
	if _, b, _ := tailState(j); b > tailMaxBytes {
		t.Fatalf("tail holds %d bytes, bound %d", b, tailMaxBytes)
	}
	recs := readAll(t, j, 0, 1<<20)
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if !bytes.Equal(r.Data, payload(i, 100000)) {
			t.Fatalf("record %d differs", i+1)
		}
	}
	files, _, _ := tailState(j)
	if files == 0 {
		t.Fatal("old records did not come from the files")
	}
	readAll(t, j, uint64(n-5), 1<<20)
	if f, _, _ := tailState(j); f != files {
		t.Fatal("recent records were read from the files")
	}
}

// The sync policy: records acknowledged within a sync interval are never
// fsync'd; records left unacknowledged for a whole interval are, and then
// leave memory; Sync makes everything durable.
func TestSyncSkipsDelivered(t *testing.T) {
	j := openT(t, Options{SegmentBytes: 64 << 10, SyncInterval: time.Hour})
	j.syncRound(false) // the round Open asked for
	base := j.fsyncs.Load()
	for i := 0; i < 40; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 10000))
	}
	j.Ack(20)
	j.syncRound(false)
	j.Ack(j.Last())
	j.syncRound(false)
	j.syncRound(false)
	if n := j.fsyncs.Load() - base; n != 0 {
		t.Fatalf("%d fsyncs for records acknowledged within an interval", n)
	}

	for i := 0; i < 40; i++ {
		appendT(t, j, KindStdout, 0, payload(i, 10000))
	}
	j.syncRound(false)
	if n := j.fsyncs.Load() - base; n != 0 {
		t.Fatalf("%d fsyncs before the records were an interval old", n)
	}
	if _, b, _ := tailState(j); b == 0 {
		t.Fatal("fresh records are not in memory")
	}
	j.syncRound(false)
	if n := j.fsyncs.Load() - base; n == 0 {
		t.Fatal("records unacknowledged for an interval were not fsync'd")
	}
	if _, b, _ := tailState(j); b != 0 {
		t.Fatalf("durable records still hold %d bytes of memory", b)
	}
	recs := readAll(t, j, 40, 0)
	if len(recs) != 40 || !bytes.Equal(recs[39].Data, payload(39, 10000)) {
		t.Fatalf("read back %d records", len(recs))
	}

	appendT(t, j, KindStdout, 0, []byte("x"))
	before := j.fsyncs.Load()
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if j.fsyncs.Load() == before {
		t.Fatal("Sync did not fsync a fresh record")
	}
}

// readerBehind is how far the active reader is behind the end.
func readerBehind(j *Journal) int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.endPos - j.readPos
}

func pacedCount(j *Journal) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.paced
}

// In Block mode Append waits for an active reader that is more than
// readAhead behind, goes on when it reads, and stops waiting for a reader
// that stalls. Drop mode never waits.
func TestPaceWaitsForReader(t *testing.T) {
	clk := clock.NewFake(time.Time{})
	j := openT(t, Options{MaxBytes: 16 * readAhead, SyncInterval: time.Hour, Clock: clk})
	appendT(t, j, KindStdout, 0, []byte("start"))
	readAll(t, j, 0, 0) // a reader is active and caught up
	chunk := payload(1, MaxDataBytes)
	for j.Unacked() <= readAhead {
		appendT(t, j, KindStdout, 0, chunk)
	}
	res := startAppend(context.Background(), j, KindStdout, chunk)
	tstest.WaitFor(t, testTimeout, "Append waiting for the reader", func() bool { return pacedCount(j) == 1 })
	select {
	case r := <-res:
		t.Fatalf("Append did not wait for the reader: %+v", r)
	default:
	}
	readAll(t, j, 0, 0)
	if r := recv(t, res, "Append after the reader caught up"); r.err != nil {
		t.Fatal(r.err)
	}
	// The reader stops reading: Append waits readerStall on the clock
	// (not a moment less), then goes on.
	for readerBehind(j) <= readAhead {
		appendT(t, j, KindStdout, 0, chunk)
	}
	waitsReaderStall(t, clk, j, chunk, "a stalled reader")
	if r := recv(t, startAppend(context.Background(), j, KindStdout, chunk), "the next Append past a stalled reader"); r.err != nil {
		t.Fatal(r.err)
	}

	d := openT(t, Options{MaxBytes: 16 * readAhead, Mode: Drop, SyncInterval: time.Hour})
	appendT(t, d, KindStdout, 0, []byte("start"))
	readAll(t, d, 0, 0)
	for d.Unacked() <= 2*readAhead {
		appendT(t, d, KindStdout, 0, chunk) // would hang if Drop mode waited
	}
	if pacedCount(d) != 0 {
		t.Fatal("a Drop mode Append waited for the reader")
	}
}

// In Block mode, while a client acknowledges, Append waits once more than
// ackAhead bytes are unacknowledged (so the tail holds them all and none
// is written behind), goes on when an ack comes, and stops waiting for
// acks that stop coming for readerStall. A journal whose client never
// acknowledged anything is not paced by acks.
func TestPaceWaitsForAcks(t *testing.T) {
	clk := clock.NewFake(time.Time{})
	j := openT(t, Options{MaxBytes: 64 << 20, SyncInterval: time.Hour, Clock: clk}) // a builtin session's
	ahead := j.ackAheadLocked()                                                     // set at Open, never changed
	if ahead <= 0 {
		t.Fatalf("the default tail and segments are not paced by acks (ackAhead %d)", ahead)
	}
	chunk := payload(1, 256<<10)
	var after uint64
	// appendNow appends chunk and fails, instead of hanging on the fake
	// clock, if Append waits; the reader keeps up, so that only acks pace.
	appendNow := func(what string) {
		t.Helper()
		res := startAppend(context.Background(), j, KindStdout, chunk)
		tstest.WaitFor(t, testTimeout, what, func() bool { return len(res) == 1 || pacedCount(j) == 1 })
		if pacedCount(j) == 1 {
			t.Fatalf("%s: Append waited with %d bytes unacknowledged (ackAhead %d)", what, j.Unacked(), ahead)
		}
		if r := <-res; r.err != nil {
			t.Fatal(r.err)
		}
		recs := readAll(t, j, after, 0)
		after = recs[len(recs)-1].Seq
	}
	for j.Unacked() <= 2*ahead {
		appendNow("an Append before any ack")
	}
	j.Ack(after)
	for j.Unacked() <= ahead {
		appendNow("an Append within ackAhead")
	}
	res := startAppend(context.Background(), j, KindStdout, chunk)
	tstest.WaitFor(t, testTimeout, "Append waiting for an ack", func() bool { return pacedCount(j) == 1 })
	j.Ack(after)
	if r := recv(t, res, "Append after an ack"); r.err != nil {
		t.Fatal(r.err)
	}
	readAll(t, j, after, 0)
	after = j.Last()
	// The acks stop: Append waits readerStall after the last one, then goes on.
	for j.Unacked() <= ahead {
		appendNow("an Append within ackAhead after an ack")
	}
	waitsReaderStall(t, clk, j, chunk, "acks that stopped")
}

// A segment is at most a quarter of the tail by default, so that the tail
// holds one beside what a client owes in acks: a builtin session's 8 MiB
// tail gets 2 MiB segments, a bash session's 16 MiB tail 4 MiB ones, and a
// small journal keeps a quarter of its MaxBytes.
func TestDefaultSegmentFitsTail(t *testing.T) {
	for _, c := range []struct {
		maxBytes, tail, want int64
	}{
		{64 << 20, 0, 2 << 20},
		{1 << 30, 0, 2 << 20},
		{64 << 20, 16 << 20, 4 << 20},
		{4 << 20, 0, 1 << 20},
		{64 << 10, 0, 64 << 10},
	} {
		j := openT(t, Options{MaxBytes: c.maxBytes, TailBytes: c.tail, SyncInterval: time.Hour})
		if j.segBytes != c.want {
			t.Errorf("MaxBytes %d, TailBytes %d: segments of %d bytes, want %d", c.maxBytes, c.tail, j.segBytes, c.want)
		}
	}
}

// waitsReaderStall starts an Append that pacing holds back and checks that
// it waits readerStall on clk for what (not a moment less), then goes on.
func waitsReaderStall(t *testing.T, clk *clock.Fake, j *Journal, chunk []byte, what string) {
	t.Helper()
	res := startAppend(context.Background(), j, KindStdout, chunk)
	tstest.WaitFor(t, testTimeout, "Append waiting for "+what, func() bool { return pacedCount(j) == 1 })
	clk.Advance(readerStall - time.Millisecond)
	select {
	case r := <-res:
		t.Fatalf("Append stopped waiting for %s before readerStall: %+v", what, r)
	default:
	}
	clk.Advance(time.Millisecond)
	if r := recv(t, res, "Append past "+what); r.err != nil {
		t.Fatal(r.err)
	}
}

// A bulk stream's records (256 KiB, the wire's largest) fill the tail's
// arrays: four to an array, none of it counted against the bound unused.
func TestBulkRecordsFillTailArrays(t *testing.T) {
	j := openT(t, Options{MaxBytes: 64 << 20, SyncInterval: time.Hour})
	chunk := payload(1, 256<<10)
	for range 16 {
		appendT(t, j, KindStdout, 0, chunk)
	}
	if _, bytes, chunks := tailState(j); chunks != 4 || bytes != 4*tailChunkBytes {
		t.Fatalf("16 records of 256 KiB: tail of %d chunks, %d bytes; want 4 arrays of %d", chunks, bytes, tailChunkBytes)
	}
}

// A round that only has a new acknowledged mark to save writes it and asks
// for no further round: a session that delivered its output goes back to
// sleep instead of waking every interval until the mark is fsync'd.
func TestAckOnlyRoundAsksForNoOther(t *testing.T) {
	j := openT(t, Options{SyncInterval: time.Hour})
	j.syncRound(false) // the round Open asked for
	for round := range 3 {
		for i := 0; i < 5; i++ {
			appendT(t, j, KindStdout, 0, payload(i, 100))
		}
		j.Ack(j.Last())
		drainKick(j)
		j.syncRound(false)
		select {
		case <-j.kick:
			t.Fatalf("round %d only wrote the acknowledged mark and asked for another", round)
		default:
		}
	}
	if seq, ok, err := readAck(filepath.Join(j.dir, "ack")); err != nil || !ok || seq != j.Last() {
		t.Fatalf("ack file holds %d (%v, %v), want %d", seq, ok, err, j.Last())
	}
}

func drainKick(j *Journal) {
	for {
		select {
		case <-j.kick:
		default:
			return
		}
	}
}

// borrowAll reads and acks every record after `after` with Borrow, giving
// each read back, and checks the records against payload(seq-1, size).
func borrowAll(t *testing.T, j *Journal, after uint64, size int) uint64 {
	t.Helper()
	for {
		recs, done, err := j.Borrow(after, 1<<20, false)
		if err != nil {
			t.Fatalf("Borrow(%d): %v", after, err)
		}
		for _, r := range recs {
			if !bytes.Equal(r.Data, payload(int(r.Seq)-1, size)) {
				t.Fatalf("record %d differs", r.Seq)
			}
			after = r.Seq
		}
		if done != nil {
			done()
		}
		if len(recs) == 0 {
			return after
		}
		j.Ack(after)
	}
}

// A reader that borrows and gives back lets the tail reuse its arrays: 64
// MiB of output through a reader that keeps up allocates a few arrays, not
// one per MiB (#18).
func TestTailArraysReused(t *testing.T) {
	const size = 200 << 10
	j := openT(t, Options{SegmentBytes: 4 << 20, SyncInterval: time.Hour})
	var after uint64
	for i := 0; i < 320; i++ { // 64 MiB
		appendT(t, j, KindStdout, 1, payload(i, size))
		if i%3 == 2 {
			after = borrowAll(t, j, after, size)
		}
	}
	borrowAll(t, j, after, size)
	j.mu.Lock()
	allocs := j.tailAllocs
	j.mu.Unlock()
	if allocs > 2*tailFreeArrays {
		t.Fatalf("%d tail arrays allocated for 64 MiB read by a reader that keeps up; want at most %d", allocs, 2*tailFreeArrays)
	}
}

// Memory a borrowed read points into is not reused while the read is out,
// even when its records are acknowledged and leave the tail meanwhile; nor
// ever after a plain Read.
func TestTailBorrowedNotReused(t *testing.T) {
	const size = 100 << 10
	for _, plain := range []bool{false, true} {
		j := openT(t, Options{SegmentBytes: 4 << 20, SyncInterval: time.Hour})
		for i := 0; i < 8; i++ {
			appendT(t, j, KindStdout, 1, payload(i, size))
		}
		var held []Record
		var done func()
		var err error
		if plain {
			held, err = j.Read(0, 1<<20)
		} else {
			held, done, err = j.Borrow(0, 1<<20, false)
		}
		if err != nil || len(held) != 8 {
			t.Fatalf("read: %d records, %v", len(held), err)
		}
		j.Ack(8)
		// Enough appends, read and acknowledged by a second, borrowing
		// reader, to reuse every array many times over.
		after := uint64(8)
		for i := 8; i < 200; i++ {
			appendT(t, j, KindStdout, 1, payload(i, size))
			after = borrowAll(t, j, after, size)
		}
		for _, r := range held {
			if !bytes.Equal(r.Data, payload(int(r.Seq)-1, size)) {
				t.Fatalf("plain=%v: record %d changed under its reader", plain, r.Seq)
			}
		}
		if done != nil {
			done()
		}
	}
}

// The session host's reader has a read of the newest records out nearly
// always (it is writing them to the agent while the command appends more),
// and the client's acknowledgements come several MiB behind
// (its window and the sockets between), so the oldest chunks leave the tail
// for its bound while a read of other arrays is out: they still come back
// for reuse, not one allocation per MiB or two of output (#18: 5 % of the
// session host's CPU went to allocating and zeroing them).
func TestTailArraysReusedBehindLaggingAcks(t *testing.T) {
	const size = 256 << 10
	j := openT(t, Options{SegmentBytes: 16 << 20, MaxBytes: 256 << 20, SyncInterval: time.Hour})
	var sent []uint64 // last seq of each borrowed batch, oldest first
	var after uint64
	i := 0
	for i < 512 { // 128 MiB
		recs, done, err := j.Borrow(after, 4<<20, false)
		if err != nil {
			t.Fatalf("Borrow(%d): %v", after, err)
		}
		if len(recs) > 0 {
			if done == nil {
				t.Fatalf("Borrow(%d): records not from the tail", after)
			}
			after = recs[len(recs)-1].Seq
		}
		// While the batch is written out, the command appends 3 MiB.
		for k := 0; k < 12; k++ {
			appendT(t, j, KindStdout, 1, payload(i, size))
			i++
		}
		if done != nil {
			done()
		}
		sent = append(sent, after)
		if len(sent) > 4 { // acknowledged 12 MiB late
			j.Ack(sent[0])
			sent = sent[1:]
		}
	}
	j.mu.Lock()
	allocs := j.tailAllocs
	j.mu.Unlock()
	if want := tailMaxBytes/tailChunkBytes + tailFreeArrays; allocs > want {
		t.Fatalf("%d tail arrays allocated for 128 MiB behind acknowledgements 12 MiB late; want a tail's worth and the spares at most (%d)", allocs, want)
	}
	t.Logf("%d tail arrays allocated", allocs)
}
