package journal

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-sh/tether/internal/clock"
)

// ErrClosed is returned by operations on a closed journal.
var ErrClosed = errors.New("journal: closed")

// ErrExhausted is returned by Append when sequence numbers above MaxSeq
// would be needed.
var ErrExhausted = errors.New("journal: sequence numbers exhausted")

// MaxSeq is the largest sequence number. Keeping it far from 2^64 means seq
// arithmetic never overflows; records, segment names and ack marks above it
// are treated as corrupt.
const MaxSeq = 1 << 62

// Defaults for Options.
const (
	DefaultMaxBytes     = 64 << 20
	DefaultSyncInterval = 100 * time.Millisecond

	minDefaultSegment = 64 << 10
	maxDefaultSegment = 4 << 20
	maxSegmentBytes   = 1 << 30

	// droppedRecordSize is the encoded size of a KindDropped record.
	droppedRecordSize = HeaderSize + 8
)

// Options configure a Journal.
type Options struct {
	Dir      string // created 0700 if missing
	MaxBytes int64  // bound on unacknowledged record bytes (headers+payload); default 64 MiB
	Mode     Mode   // what Append does when the journal is full
	// SegmentBytes defaults to clamp(MaxBytes/4, 64 KiB, min(4 MiB,
	// TailBytes/4)): the tail holds a segment beside what a client has not
	// acknowledged yet (pace.go). At most 1 GiB.
	SegmentBytes int64
	SyncInterval time.Duration // default 100ms: dirty segments are fsync'd in batches in the background
	// TailBytes bounds the records kept in memory (default 8 MiB). Written
	// behind, the tail also holds the acknowledged records of the segment
	// being appended to, and records acknowledged while in it are never
	// written: a bound above a client's acknowledgement lag (several MiB
	// for bulk output) plus a segment saves the files' writes.
	TailBytes int64
	// Clock drives the sync loop's batching and the pacing of Append
	// behind a slow reader (nil: the real clock).
	Clock clock.Clock
}

// Journal is a sequence-numbered, on-disk output log. It is safe for
// concurrent use.
type Journal struct {
	dir          string
	segBytes     int64
	syncInterval time.Duration
	clock        clock.Clock
	tailMax      int64

	// appendMu serializes Append (and Close against an in-flight Append).
	// Fields below it up to mu are guarded by appendMu.
	appendMu sync.Mutex
	fill     *tailChunk // the tail chunk Append encodes into (tail.go)

	mu             sync.Mutex
	maxBytes       int64
	mode           Mode
	segs           []*segment // oldest first; the last one is appended to
	next           uint64     // seq of the next record
	endPos         int64      // logical position after the last record
	acked          uint64
	pendingDrop    uint64 // output bytes dropped since the last KindDropped record
	pendingDropped bool   // records were dropped since the last KindDropped record
	droppedTotal   uint64
	closed         bool
	changed        chan struct{} // closed and replaced when state changes
	changedUsed    bool
	dirDirty       bool
	ackSaved       uint64
	ackSavedOK     bool // the ack file holds ackSaved, fsync'd
	ackWritten     uint64
	ackWrittenOK   bool         // the ack file holds ackWritten, maybe not yet fsync'd
	syncMark       int64        // endPos at the previous sync round (sync.go)
	wpos           int64        // bytes below are written to their segments or need not be (behind.go)
	werr           error        // the first failed write behind, for Sync and Close
	replayFrom     uint64       // ReadRetained returns no record below (a sealed segment's, behind.go)
	tail           []*tailChunk // recent records in memory (tail.go)
	tailBytes      int64        // capacity of the tail's chunks
	borrows        int          // tail reads not yet given back (tail.go)
	pinned         bool         // a Read returned tail memory: no array is reused
	free           []*tailArray // arrays for the next chunks
	fileReads      int          // Reads served from the files (for tests)
	tailAllocs     int          // tail arrays allocated, not reused (for tests)
	readPos        int64        // where the last Read ended (pace.go)
	readAt         time.Time    // when a Read last moved readPos forward
	ackAt          time.Time    // when an Ack last moved the mark forward (pace.go)
	paced          int          // Appends waiting for the reader or acks (pace.go)
	blocked        int          // Appends waiting for space (for tests)
	waiting        int          // Waits waiting for records (for tests)

	fsyncs  atomic.Int64 // segment fsyncs (for tests)
	written atomic.Int64 // record bytes written to segment files (for tests)
	creates atomic.Int64 // segment files created by Append, not reused (for tests)
	syncMu  sync.Mutex   // serializes syncNow; guards ackFile writes
	writeMu sync.Mutex   // serializes writeBehind (behind.go)
	ackFile *os.File
	stop    chan struct{}
	kick    chan struct{} // something changed: the sync loop has work
	done    chan struct{}
	spare   spareFile // spare.go
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// Open opens the journal in opts.Dir, creating it if needed. Existing
// segments are recovered: records are validated, a torn or corrupt tail is
// truncated, numbering continues after the last good record and the acked
// mark is restored from the ack file.
func Open(opts Options) (*Journal, error) {
	if opts.Dir == "" {
		return nil, errors.New("journal: Options.Dir is empty")
	}
	// Build the CRC table now, while the session starts, rather than in
	// its first command (which a fan-out is waiting for).
	castagnoli()
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Mode != Block && opts.Mode != Drop {
		return nil, fmt.Errorf("journal: invalid mode %v", opts.Mode)
	}
	tailMax := cmp.Or(opts.TailBytes, tailMaxBytes)
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = min(max(opts.MaxBytes/4, minDefaultSegment), min(maxDefaultSegment, tailMax/4))
	}
	opts.SegmentBytes = min(opts.SegmentBytes, maxSegmentBytes)
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{
		dir:          opts.Dir,
		segBytes:     opts.SegmentBytes,
		syncInterval: opts.SyncInterval,
		clock:        clock.Or(opts.Clock),
		tailMax:      tailMax,
		maxBytes:     opts.MaxBytes,
		mode:         opts.Mode,
		changed:      make(chan struct{}),
		stop:         make(chan struct{}),
		kick:         make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	os.Remove(filepath.Join(opts.Dir, spareName)) // a spare left by a killed host
	if err := j.recover(); err != nil {
		j.closeFiles()
		return nil, err
	}
	select { // persist what recovery changed
	case j.kick <- struct{}{}:
	default: // already asked (a spare was parked)
	}
	go j.syncLoop()
	return j, nil
}

// notifyLocked wakes everyone waiting on j.changed.
func (j *Journal) notifyLocked() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
	if j.changedUsed {
		close(j.changed)
		j.changed = make(chan struct{})
		j.changedUsed = false
	}
}

// changedLocked returns a channel that is closed on the next state change.
func (j *Journal) changedLocked() <-chan struct{} {
	j.changedUsed = true
	return j.changed
}

// firstLocked returns the oldest retained unacknowledged seq (j.next if
// none). Acknowledged records are logically gone even while the rest of
// their segment keeps them on disk.
func (j *Journal) firstLocked() uint64 {
	first := j.next
	if len(j.segs) > 0 && j.segs[0].n() > 0 {
		first = j.segs[0].first
	}
	return min(max(first, j.acked+1), j.next)
}

// segIndexLocked returns the index of the segment holding retained seq.
func (j *Journal) segIndexLocked(seq uint64) int {
	return sort.Search(len(j.segs), func(i int) bool { return j.segs[i].first > seq }) - 1
}

// unackedLocked returns the bytes of retained records above the acked mark.
func (j *Journal) unackedLocked() int64 {
	start := j.firstLocked()
	if start >= j.next {
		return 0
	}
	s := j.segs[j.segIndexLocked(start)]
	return j.endPos - (s.base + int64(s.entries[start-s.first].off))
}

// removeLocked drops segment i from the list. It returns the segment if its
// file can be closed and deleted right away (see finalize).
func (j *Journal) removeLocked(i int) *segment {
	s := j.segs[i]
	j.segs = append(j.segs[:i], j.segs[i+1:]...)
	s.removed = true
	j.dirDirty = true
	if s.refs == 0 {
		return s
	}
	return nil
}

// unrefLocked releases a reference taken under the lock.
func (j *Journal) unrefLocked(s *segment, dead []*segment) []*segment {
	s.refs--
	if s.refs == 0 && (s.removed || s.closing) {
		dead = append(dead, s)
	}
	return dead
}

// finalize closes (and, if removed, deletes or keeps as the spare)
// segments no longer referenced.
func (j *Journal) finalize(dead []*segment) {
	for _, s := range dead {
		if s == nil {
			continue
		}
		if s.removed && j.park(s) {
			continue
		}
		s.f.Close()
		if s.removed {
			os.Remove(s.path)
		}
	}
}

// trimAckedLocked removes fully acknowledged segments other than the one
// being appended to.
func (j *Journal) trimAckedLocked(dead []*segment) []*segment {
	for len(j.segs) > 1 && j.segs[0].n() > 0 && j.segs[0].last() <= j.acked {
		dead = append(dead, j.removeLocked(0))
	}
	return dead
}

// dropOldestLocked discards the oldest segment, accounting for its
// unacknowledged records as dropped.
func (j *Journal) dropOldestLocked(dead []*segment) []*segment {
	s := j.segs[0]
	if start := max(j.acked+1, s.first); s.n() > 0 && start <= s.last() {
		out := uint64(s.outTotal - s.entries[start-s.first].out)
		j.droppedTotal += out
		j.pendingDrop += out
		for _, d := range s.drops {
			if d.seq >= start {
				j.pendingDrop += d.n
			}
		}
		j.pendingDropped = true
	}
	return append(dead, j.removeLocked(0))
}

// Append adds a record and returns its sequence number. data is copied.
// When the journal is full, Block mode waits for acknowledgements (until ctx
// is done or the journal is closed) and Drop mode discards the oldest
// unacknowledged segments, announcing the loss with a KindDropped record
// written just before this one. A record always fits into a journal with no
// unacknowledged records.
func (j *Journal) Append(ctx context.Context, kind Kind, cmd uint32, data []byte) (uint64, error) {
	if len(data) > MaxDataBytes {
		return 0, fmt.Errorf("%w: %d bytes of data (max %d)", ErrTooLarge, len(data), MaxDataBytes)
	}
	j.appendMu.Lock()
	defer j.appendMu.Unlock()
	var dead []*segment
	defer func() { j.finalize(dead) }()

	sl, err := j.reserve(ctx, len(data), &dead)
	if err != nil {
		return 0, err
	}
	copy(sl.data(), data)
	return j.commit(sl, kind, cmd, len(data)), nil
}

// AppendFrom is Append for data that read puts straight into the journal's
// memory, so that a pipe's bytes are not read into one buffer and copied
// into the tail from there (#18: that copy was 12–20 % of a session host's
// CPU for bulk output). read is called once, with room for up to max bytes
// (less when the tail's current chunk has less room left, but at least
// minInPlace unless max is smaller), and returns how many it put at the
// start of it; with 0 nothing is appended and AppendFrom returns (0, 0,
// nil). read must not block: Appends wait while it runs. It must not keep
// p either: p is the journal's.
//
// AppendFrom waits and drops as Append does for a record of max bytes,
// whatever read then returns: in Block mode a full journal waits a little
// longer for a short record than Append would.
func (j *Journal) AppendFrom(ctx context.Context, kind Kind, cmd uint32, max int, read func(p []byte) int) (seq uint64, n int, err error) {
	if max > MaxDataBytes || max <= 0 {
		return 0, 0, fmt.Errorf("%w: room for %d bytes of data (1 to %d)", ErrTooLarge, max, MaxDataBytes)
	}
	j.appendMu.Lock()
	defer j.appendMu.Unlock()
	var dead []*segment
	defer func() { j.finalize(dead) }()

	if c := j.fill; c != nil && !j.pendingDroppedNow() {
		// Fill the chunk to its end rather than leave the rest unused.
		if room := cap(c.buf) - len(c.buf) - HeaderSize; room < max && room >= minInPlace {
			max = room
		}
	}
	sl, err := j.reserve(ctx, max, &dead)
	if err != nil {
		return 0, 0, err
	}
	n = read(sl.data())
	if n <= 0 {
		return 0, 0, nil // nothing published: the room is Append's again
	}
	n = min(n, max)
	return j.commit(sl, kind, cmd, n), n, nil
}

// minInPlace is the least room AppendFrom offers read while more was asked
// for: below it, a new chunk is started.
const minInPlace = 64 << 10

func (j *Journal) pendingDroppedNow() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pendingDropped
}

// appendSlot is where the next record goes: reserve finds it, the caller
// puts the data in, commit writes the header and publishes it. appendMu is
// held throughout.
type appendSlot struct {
	active   *segment
	c        *tailChunk
	seq      uint64 // the record's (after the KindDropped record, if any)
	withDrop bool
	room     []byte // c's unpublished bytes, from the first record on
	off      int    // where the record's header starts in room
	size     int    // the most data the record may carry
}

// data is the room for the record's data.
func (sl *appendSlot) data() []byte {
	return sl.room[sl.off+HeaderSize : sl.off+HeaderSize+sl.size]
}

// reserve waits until a record of up to size bytes of data may be
// appended (Append's doc says how), picks its segment, starting a new one
// if needed, and its place in the tail. With appendMu held.
func (j *Journal) reserve(ctx context.Context, size int, dead *[]*segment) (appendSlot, error) {
	enc := int64(EncodedSize(size))
	j.mu.Lock()
	for {
		if j.closed {
			j.mu.Unlock()
			return appendSlot{}, ErrClosed
		}
		need := enc
		if j.pendingDropped {
			need += droppedRecordSize
		}
		un := j.unackedLocked()
		var pace time.Duration
		if un == 0 || un+need <= j.maxBytes {
			if pace = j.paceLocked(); pace <= 0 {
				break
			}
		} else if j.mode == Drop {
			*dead = j.dropOldestLocked(*dead)
			continue
		}
		ch := j.changedLocked()
		var expired <-chan time.Time
		var timer clock.Timer
		if pace > 0 {
			timer = j.clock.NewTimer(pace)
			expired = timer.C()
			j.paced++
		} else {
			j.blocked++
		}
		j.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-expired:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if timer != nil {
			timer.Stop()
		}
		j.mu.Lock()
		if pace > 0 {
			j.paced--
		} else {
			j.blocked--
		}
		if err != nil {
			j.mu.Unlock()
			return appendSlot{}, err
		}
	}

	withDrop := j.pendingDropped
	if j.next > MaxSeq-1 {
		j.mu.Unlock()
		return appendSlot{}, ErrExhausted
	}
	need := enc
	if withDrop {
		need += droppedRecordSize
	}
	var active *segment
	if len(j.segs) > 0 {
		active = j.segs[len(j.segs)-1]
	}
	// Roll by size only: rolling whenever the active segment is fully
	// acknowledged would create a file per record for a client that keeps up.
	roll := active == nil || (active.n() > 0 && active.size+need > j.segBytes) || active.sealed
	seq := j.next
	base := j.endPos
	j.mu.Unlock()

	if roll {
		// Only Append changes the tail of j.segs and j.next/endPos, and we
		// hold appendMu, so they are stable while the lock is released.
		s, err := j.newSegment(seq, base)
		if err != nil {
			return appendSlot{}, err
		}
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			s.f.Close()
			os.Remove(s.path)
			return appendSlot{}, ErrClosed
		}
		j.segs = append(j.segs, s)
		j.dirDirty = true
		*dead = j.trimAckedLocked(*dead)
		j.mu.Unlock()
		active = s
	}

	// The record goes into the tail (tail.go), after its published bytes.
	c := j.fill
	if c == nil || int64(cap(c.buf)-len(c.buf)) < need {
		c = j.newFill(base, need)
	}
	sl := appendSlot{active: active, c: c, seq: seq, withDrop: withDrop, room: c.buf[len(c.buf):cap(c.buf)], size: size}
	if withDrop {
		var cnt [8]byte
		binary.BigEndian.PutUint64(cnt[:], j.pendingDrop)
		AppendRecord(sl.room[:0], Record{Seq: seq, Kind: KindDropped, Data: cnt[:]})
		sl.off = droppedRecordSize
		sl.seq++
	}
	return sl, nil
}

// commit seals the record of sl, whose n bytes of data are in place, and
// publishes it. With appendMu held.
func (j *Journal) commit(sl appendSlot, kind Kind, cmd uint32, n int) uint64 {
	rec := sl.room[sl.off : sl.off+HeaderSize+n]
	sealRecord(rec, Record{Seq: sl.seq, Kind: kind, Cmd: cmd})
	total := sl.off + len(rec)

	// Not written to the segment yet: a record the client acknowledges
	// while it is in the tail never is (behind.go).
	j.mu.Lock()
	j.publishLocked(sl.c, total)
	if sl.withDrop {
		sl.active.add(sl.seq-1, KindDropped, sl.room[HeaderSize:droppedRecordSize])
		j.pendingDrop = 0
		j.pendingDropped = false
	}
	sl.active.add(sl.seq, kind, rec[HeaderSize:])
	j.next = sl.seq + 1
	j.endPos += int64(total)
	j.trimTailLocked(0)
	j.notifyLocked()
	upto := j.overBoundLocked()
	j.mu.Unlock()
	if upto > 0 {
		// A failed write is kept for Sync and Close (behind.go); the
		// record is in the journal either way.
		j.writeBehind(upto)
	}
	return sl.seq
}

type readChunk struct {
	s        *segment
	off, end int64
}

// Read returns records with Seq > after, in order, up to about maxBytes of
// encoded records but at least one if any exists. If after is below First(),
// reading starts at First(): records dropped in Drop mode are announced by a
// KindDropped record appended before the next record after the drop (so it
// follows the surviving records), and acknowledged records are not returned.
// Read returns no records (and no error) if there is nothing after `after`.
// The records' Data may point into the journal's memory: callers must not
// modify it.
func (j *Journal) Read(after uint64, maxBytes int) ([]Record, error) {
	recs, _, err := j.read(after, maxBytes, false, false)
	return recs, err
}

// Borrow is Read (ReadRetained if retained) for a caller that is done with
// the records' Data when it calls done: the journal may then reuse the
// memory they point into. done must be called exactly once (it may be nil
// when no records are returned). Read's records instead stay valid for
// good, which ends that reuse for this journal.
func (j *Journal) Borrow(after uint64, maxBytes int, retained bool) (recs []Record, done func(), err error) {
	recs, arrs, err := j.read(after, maxBytes, retained, true)
	if arrs != nil {
		done = func() { j.giveBack(arrs) }
	}
	return recs, done, err
}

// ReadRetained is Read that also returns acknowledged records still held
// in a segment (from Retained()): what `tether receive --all` replays.
func (j *Journal) ReadRetained(after uint64, maxBytes int) ([]Record, error) {
	recs, _, err := j.read(after, maxBytes, true, false)
	return recs, err
}

// Retained returns the seq of the oldest record still held, acknowledged
// or not (Last()+1 if there is none). Acknowledged records stay in their
// segment until the whole segment is acknowledged and another one is
// being written.
func (j *Journal) Retained() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.retainedLocked()
}

func (j *Journal) retainedLocked() uint64 {
	if len(j.segs) > 0 && j.segs[0].n() > 0 {
		// Not below a seal: those records were never written (behind.go).
		return min(max(j.segs[0].first, j.replayFrom), j.firstLocked())
	}
	return j.firstLocked()
}

// read reads records; borrowed, when not nil, are the tail arrays they
// point into, for the caller (borrow) to give back.
func (j *Journal) read(after uint64, maxBytes int, acked, borrow bool) (recs []Record, borrowed []*tailArray, err error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil, nil, ErrClosed
	}
	floor := j.firstLocked()
	if acked {
		floor = j.retainedLocked()
	}
	start := max(after+1, floor)
	if start >= j.next {
		j.readLocked(j.endPos)
		j.mu.Unlock()
		return nil, nil, nil
	}
	var chunks []readChunk
	var total int64
	budget := int64(maxBytes)
	seq := start
	full := false
	// A read that starts below the tail reads the files, and only up to
	// the tail: bytes in it may not be written yet (behind.go).
	fileEnd := int64(-1)
	if len(j.tail) > 0 {
		if s := j.segs[j.segIndexLocked(start)]; s.base+int64(s.entries[start-s.first].off) < j.tail[0].pos {
			fileEnd = j.tail[0].pos
		}
	}
	for i := j.segIndexLocked(start); i < len(j.segs) && seq < j.next && !full; i++ {
		s := j.segs[i]
		k := int(seq - s.first)
		if k >= s.n() {
			continue
		}
		off := int64(s.entries[k].off)
		end := off
		for ; k < s.n(); k++ {
			e := s.end(k)
			if (total > 0 && total+(e-end) > budget) || (fileEnd >= 0 && s.base+e > fileEnd) {
				full = true
				break
			}
			total += e - end
			end = e
			seq++
		}
		if end > off {
			chunks = append(chunks, readChunk{s, off, end})
		}
	}
	if len(chunks) > 0 {
		first, last := chunks[0], chunks[len(chunks)-1]
		j.readLocked(last.s.base + last.end)
		if mem, arrs := j.tailSlicesLocked(first.s.base+first.off, last.s.base+last.end); mem != nil {
			// Tail memory is not reused while a read of it is out;
			// a Read's is never given back.
			if borrow {
				j.borrows++
				for _, a := range arrs {
					a.borrowed++
				}
				borrowed = arrs
			} else {
				j.pinned = true
				j.free = nil
			}
			j.mu.Unlock()
			recs := make([]Record, 0, int(seq-start))
			var err error
			for _, b := range mem {
				if recs, err = decodeTrusted(b, recs); err != nil {
					err = fmt.Errorf("journal: tail: %w", err)
					break
				}
			}
			return recs, borrowed, err
		}
	}
	for _, c := range chunks {
		c.s.refs++
	}
	j.fileReads++
	j.mu.Unlock()

	recs, err = readChunks(chunks, int(seq-start))

	var dead []*segment
	j.mu.Lock()
	for _, c := range chunks {
		dead = j.unrefLocked(c.s, dead)
	}
	j.mu.Unlock()
	j.finalize(dead)
	return recs, nil, err
}

func readChunks(chunks []readChunk, n int) ([]Record, error) {
	recs := make([]Record, 0, n)
	for _, c := range chunks {
		buf := make([]byte, c.end-c.off)
		if _, err := c.s.f.ReadAt(buf, c.off); err != nil {
			return recs, fmt.Errorf("journal: read %s: %w", c.s.path, err)
		}
		for len(buf) > 0 {
			r, n, err := DecodeRecord(buf)
			if err != nil {
				return recs, fmt.Errorf("journal: %s: %w", c.s.path, err)
			}
			recs = append(recs, r)
			buf = buf[n:]
		}
	}
	return recs, nil
}

// Wait returns nil once Last() > after, ctx.Err() if ctx is done first, or
// ErrClosed if the journal is closed.
func (j *Journal) Wait(ctx context.Context, after uint64) error {
	for {
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			return ErrClosed
		}
		if j.next-1 > after {
			j.mu.Unlock()
			return nil
		}
		ch := j.changedLocked()
		j.waiting++
		j.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		j.mu.Lock()
		j.waiting--
		j.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Ack marks records with Seq <= seq as delivered: their bytes no longer count
// against MaxBytes (waking blocked Appends) and fully acknowledged segments
// are deleted. The mark is persisted by the background sync. Acks never move
// the mark backwards; seq is clamped to Last().
func (j *Journal) Ack(seq uint64) {
	j.mu.Lock()
	seq = min(seq, j.next-1)
	if j.closed || seq <= j.acked {
		j.mu.Unlock()
		return
	}
	j.acked = seq
	j.ackAt = j.clock.Now()
	dead := j.trimAckedLocked(nil)
	upto := j.allAckedLocked()
	j.trimTailLocked(0)
	j.notifyLocked()
	j.mu.Unlock()
	j.finalize(dead)
	if upto > 0 {
		j.writeBehind(upto) // a failure is kept for Sync and Close
	}
}

// Acked returns the acknowledged mark.
func (j *Journal) Acked() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.acked
}

// Last returns the seq of the last appended record (0 if none ever was).
func (j *Journal) Last() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next - 1
}

// First returns the seq of the oldest retained unacknowledged record,
// Last()+1 if there is none. Read never returns records below it.
func (j *Journal) First() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.firstLocked()
}

// Unacked returns the bytes (headers+payload) of retained unacknowledged
// records, the quantity bounded by MaxBytes.
func (j *Journal) Unacked() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.unackedLocked()
}

// MemoryBytes returns the memory the journal holds for records: the tail's
// arrays, the one being filled and the spares kept for reuse. Written
// behind, the tail holds acknowledged records too (behind.go).
func (j *Journal) MemoryBytes() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := j.tailBytes + int64(len(j.free))*tailChunkBytes
	if j.fill != nil && !j.fill.inTail {
		n += int64(cap(j.fill.buf))
	}
	return n
}

// DroppedBytes returns the stdout/stderr payload bytes dropped since Open.
func (j *Journal) DroppedBytes() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.droppedTotal
}

// SetLimits changes MaxBytes and Mode of an open journal and wakes blocked
// Appends so they re-evaluate. A maxBytes <= 0 or an unknown mode leaves the
// respective setting unchanged. Lowering the limit in Drop mode takes effect
// at the next Append.
func (j *Journal) SetLimits(maxBytes int64, mode Mode) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if maxBytes > 0 {
		j.maxBytes = maxBytes
	}
	if mode == Block || mode == Drop {
		j.mode = mode
	}
	j.notifyLocked()
}

// Close stops the background sync, fsyncs, closes the files and wakes all
// waiters with ErrClosed. Closing a closed journal returns nil.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.notifyLocked()
	j.mu.Unlock()

	close(j.stop)
	<-j.done
	j.appendMu.Lock() // wait for an in-flight write
	defer j.appendMu.Unlock()
	err := j.syncNow()
	j.closeFiles()
	j.shutSpare()
	return err
}

// closeFiles closes the segment files (deferred while readers use them) and
// the ack file.
func (j *Journal) closeFiles() {
	var dead []*segment
	j.mu.Lock()
	for _, s := range j.segs {
		s.closing = true
		if s.refs == 0 {
			dead = append(dead, s)
		}
	}
	j.segs = nil
	if len(j.tail) > 0 {
		j.dropTailLocked(len(j.tail))
	}
	j.free = nil
	j.mu.Unlock()
	j.finalize(dead)
	j.syncMu.Lock()
	if j.ackFile != nil {
		j.ackFile.Close()
		j.ackFile = nil
	}
	j.syncMu.Unlock()
}

// Remove closes the journal and deletes its directory.
func (j *Journal) Remove() error {
	cerr := j.Close()
	if err := os.RemoveAll(j.dir); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return cerr
}
