package journal

import "encoding/binary"

// The in-memory tail: the most recently appended records, encoded exactly
// as in the segment files, kept in memory so that a client that keeps up is
// served without reading the files back (no read, no copy: Read returns
// records whose Data point into the tail).
//
// Append encodes each record into the last chunk (a new one when it does
// not fit), then publishes it by extending the chunk's length; it reaches
// the segment file later, from the chunk, or never (behind.go). Published
// bytes never change, so readers use them outside the lock. The tail
// covers the logical journal positions [tail[0].pos, endPos) without gaps.
// Chunks leave the tail, once written or part of no kept segment, when
// their records are all acknowledged, when the tail outgrows tailMaxBytes
// (oldest first), and when the sync loop made them durable because no
// client acknowledged them for a sync interval (see sync.go): an idle or
// disconnected session holds no tail memory.

// The chunks' arrays are reused (#18: allocating, zeroing and faulting in a
// fresh MiB for every MiB of output was an eighth of the session host's
// CPU). An array is free again when no chunk in the tail and not the chunk
// being filled uses it, and no borrowed read (Borrow) points into it:
// readers use the bytes outside the lock, so an array that left the tail
// while a read of it was out waits until that read is given back. (Counting
// borrows per array, not per journal, matters: the session host's reader
// nearly always has a read of the newest records out while the oldest
// chunks leave, and with one count those went to the collector, one new
// array per 2.5 MiB of output.) A Read is never given back, so after one
// (pinned) the journal allocates as before.
const (
	// A MiB of data plus four headers: a bulk stream's records carry
	// 256 KiB each (wire.MaxChunk), and four fit. In a plain MiB only three
	// did, so a quarter of every array was counted against the tail's
	// bound and never used, and bulk output was written behind (#18).
	tailChunkBytes = 1<<20 + 4*HeaderSize
	tailMaxBytes   = 8 << 20 // the default of Options.TailBytes
	tailFreeArrays = 8       // arrays kept for reuse
)

// tailChunk holds records back to back; its first byte is at logical
// journal position pos.
type tailChunk struct {
	pos    int64
	buf    []byte     // published records; guarded by Journal.mu (the bytes themselves are immutable)
	inTail bool       // guarded by Journal.mu
	arr    *tailArray // the array buf is in, shared with the chunk that continues it
}

// tailArray is the memory of one or more consecutive chunks.
type tailArray struct {
	b        []byte
	uses     int  // chunks in the tail using it, plus one while Append fills it; guarded by Journal.mu
	borrowed int  // borrowed reads pointing into it; guarded by Journal.mu
	waiting  bool // unused, to be freed when the last borrow of it ends
}

// newFill starts the chunk Append encodes into at position pos, for a
// record of need bytes, and lets go of the previous one's array.
func (j *Journal) newFill(pos, need int64) *tailChunk {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fill != nil {
		j.unuseLocked(j.fill.arr)
	}
	var a *tailArray
	if n := len(j.free); n > 0 && need <= tailChunkBytes {
		a = j.free[n-1]
		j.free[n-1] = nil
		j.free = j.free[:n-1]
	} else {
		a = &tailArray{b: make([]byte, max(tailChunkBytes, need))}
		j.tailAllocs++
	}
	a.uses = 1
	j.fill = &tailChunk{pos: pos, buf: a.b[:0], arr: a}
	return j.fill
}

// unuseLocked drops one use of a; unused, it is reused once no borrow is out.
func (j *Journal) unuseLocked(a *tailArray) {
	if a.uses--; a.uses > 0 || len(a.b) != tailChunkBytes || j.pinned {
		return
	}
	if a.borrowed > 0 {
		a.waiting = true
		return
	}
	j.freeLocked(a)
}

func (j *Journal) freeLocked(a *tailArray) {
	if len(j.free) < tailFreeArrays && !j.closed {
		j.free = append(j.free, a)
	}
}

// giveBack ends a borrowed read of arrs (Borrow's done).
func (j *Journal) giveBack(arrs []*tailArray) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.borrows--
	for _, a := range arrs {
		if a.borrowed--; a.borrowed == 0 && a.waiting {
			a.waiting = false
			if !j.pinned {
				j.freeLocked(a)
			}
		}
	}
}

func (c *tailChunk) end() int64 { return c.pos + int64(len(c.buf)) }

// publishLocked makes n more bytes of chunk c visible.
func (j *Journal) publishLocked(c *tailChunk, n int) {
	if !c.inTail {
		// New, or dropped while Append filled it: the tail ended at
		// c's last published byte either way (Append is serialized), so
		// only the new bytes are worth keeping.
		if len(c.buf) > 0 {
			// The fill's use of the array passes to the new chunk.
			c = &tailChunk{pos: c.end(), buf: c.buf[len(c.buf):len(c.buf)], arr: c.arr}
			j.fill = c
		}
		if len(j.tail) > 0 && j.tail[len(j.tail)-1].end() != c.pos {
			// Cannot happen (the tail is contiguous up to endPos); stay
			// correct anyway by starting over.
			j.dropTailLocked(len(j.tail))
		}
		c.inTail = true
		c.arr.uses++
		j.tail = append(j.tail, c)
		j.tailBytes += int64(cap(c.buf))
	}
	c.buf = c.buf[:len(c.buf)+n]
}

// dropTailLocked removes the first n chunks.
func (j *Journal) dropTailLocked(n int) {
	for _, c := range j.tail[:n] {
		c.inTail = false
		j.tailBytes -= int64(cap(c.buf))
		j.unuseLocked(c.arr)
	}
	clear(j.tail[:n])
	j.tail = j.tail[n:]
	if len(j.tail) == 0 {
		j.tail = nil
	}
}

// ackPosLocked returns the logical position of the first unacknowledged
// retained record (endPos if there is none).
func (j *Journal) ackPosLocked() int64 {
	start := j.firstLocked()
	if start >= j.next {
		return j.endPos
	}
	s := j.segs[j.segIndexLocked(start)]
	return s.base + int64(s.entries[start-s.first].off)
}

// trimTailLocked drops chunks that are acknowledged, lost (Drop mode) or
// beyond the memory bound, and those ending at or before durable (positions
// the sync loop made durable; pass 0 for none).
//
// No chunk above wpos goes: its bytes are not in the files yet (behind.go).
func (j *Journal) trimTailLocked(durable int64) {
	wpos := j.wposLocked()
	keep := min(max(j.ackPosLocked(), durable), wpos)
	n := 0
	bytes := j.tailBytes
	for n < len(j.tail) && j.tail[n].end() <= keep {
		bytes -= int64(cap(j.tail[n].buf))
		n++
	}
	for n < len(j.tail)-1 && bytes > j.tailMax && j.tail[n].end() <= wpos {
		bytes -= int64(cap(j.tail[n].buf))
		n++
	}
	if n > 0 {
		j.dropTailLocked(n)
	}
}

// tailSlicesLocked returns the published bytes at logical positions
// [lo, hi), one slice per chunk, if the tail holds all of them, and the
// arrays they are in.
func (j *Journal) tailSlicesLocked(lo, hi int64) ([][]byte, []*tailArray) {
	if len(j.tail) == 0 || lo < j.tail[0].pos || hi > j.endPos || lo >= hi {
		return nil, nil
	}
	var out [][]byte
	var arrs []*tailArray
	for _, c := range j.tail {
		if c.end() <= lo {
			continue
		}
		if c.pos >= hi {
			break
		}
		a, b := max(lo, c.pos)-c.pos, min(hi, c.end())-c.pos
		out = append(out, c.buf[a:b])
		if len(arrs) == 0 || arrs[len(arrs)-1] != c.arr {
			arrs = append(arrs, c.arr)
		}
	}
	return out, arrs
}

// decodeTrusted decodes records this process encoded itself (in the tail):
// the CRC is not checked again.
func decodeTrusted(b []byte, recs []Record) ([]Record, error) {
	for len(b) > 0 {
		if len(b) < HeaderSize {
			return recs, ErrShortRecord
		}
		n := HeaderSize + int(binary.BigEndian.Uint32(b[14:18]))
		if n > len(b) || b[0] != recordMagic {
			return recs, ErrShortRecord
		}
		recs = append(recs, Record{
			Seq:  binary.BigEndian.Uint64(b[6:14]),
			Kind: Kind(b[1]),
			Cmd:  binary.BigEndian.Uint32(b[2:6]),
			Data: b[HeaderSize:n:n],
		})
		b = b[n:]
	}
	return recs, nil
}
