package journal

import (
	"errors"
	"fmt"
)

// The journal is written behind (#18): Append encodes a record into the
// tail and returns; the bytes go to their segment file only when they must
// — before they would leave the tail unacknowledged (the tail over its
// bound), when the sync loop makes records that stayed unacknowledged for
// a sync interval durable, and on Sync and Close. Records a client
// acknowledges while they are in the tail are never written: once every
// record of a segment other than the one being appended to is acknowledged
// the segment goes (trimAckedLocked) and its unwritten bytes with it. For a
// client that keeps up, bulk output costs the session host no file writes
// (the pwrite was a fifth of its CPU).
//
// Invariant: every byte at a logical position at or above wpos is in the
// tail, and every byte below it is in its segment file or in a segment no
// longer retained. Bytes are written in order, from wpos up, so each
// segment's file holds its records from its start: a segment whose first
// records were acknowledged but not written is written from its start
// when a later record of it must be (the tail keeps the acknowledged bytes
// until then). trimTailLocked lets no chunk above wpos go.
//
// What a crash of the session host loses: records appended but neither
// written nor acknowledged (at most a tail's worth, about the last 10 ms of
// a stream that is being delivered). The session ends with its host either
// way (the agent marks it broken); a journal reopened after that recovers
// the records that are in the files, and numbering continues after the
// acknowledged mark and the last segment's name as before.

// sealBytes: when a client has acknowledged everything, unwritten bytes
// of at least this much are never written (the segment is sealed, the next
// record starts a new one); fewer are written (one small write, where a
// new segment per command would cost a file rename each), so that an idle
// session holds no tail.
const sealBytes = 64 << 10

// allAckedLocked, once every record is acknowledged, seals the active
// segment or returns the position to write up to (0: nothing to do).
func (j *Journal) allAckedLocked() int64 {
	if j.acked+1 != j.next || j.wposLocked() >= j.endPos || len(j.segs) == 0 {
		return 0
	}
	if j.endPos-j.wpos < sealBytes {
		return j.endPos
	}
	j.segs[len(j.segs)-1].sealed = true
	j.wpos = j.endPos
	j.replayFrom = j.next
	return 0
}

// wposLocked advances wpos over segments no longer retained and returns it.
func (j *Journal) wposLocked() int64 {
	if len(j.segs) == 0 {
		j.wpos = max(j.wpos, j.endPos)
	} else {
		j.wpos = max(j.wpos, j.segs[0].base)
	}
	return j.wpos
}

// overBoundLocked returns the position up to which Append should write
// behind because the tail holds more than its bound and its oldest
// chunks are unwritten (0: no need). It writes down to half the bound, a
// few MiB in one go.
func (j *Journal) overBoundLocked() int64 {
	if j.tailBytes <= j.tailMax || len(j.tail) == 0 || j.tail[0].end() <= j.wposLocked() {
		return 0
	}
	bytes := j.tailBytes
	for _, c := range j.tail[:len(j.tail)-1] {
		bytes -= int64(cap(c.buf))
		if bytes <= j.tailMax/2 {
			return c.end()
		}
	}
	return j.tail[len(j.tail)-2].end()
}

// behindWrite is one segment's bytes to write: the tail's slices, at the
// segment's offset off.
type behindWrite struct {
	s     *segment
	off   int64
	parts [][]byte
}

// writeBehind writes the records below position upto (a record boundary)
// that are not in their files yet. A failed write is kept (Sync and Close
// return it) and the bytes stay in the tail.
func (j *Journal) writeBehind(upto int64) error {
	j.writeMu.Lock()
	defer j.writeMu.Unlock()

	j.mu.Lock()
	if j.werr != nil {
		err := j.werr
		j.mu.Unlock()
		return err
	}
	from := j.wposLocked()
	upto = min(upto, j.endPos)
	var ws []behindWrite
	for _, s := range j.segs {
		lo, hi := max(from, s.base), min(upto, s.base+s.size)
		if lo >= hi {
			continue
		}
		parts, _ := j.tailSlicesLocked(lo, hi)
		if parts == nil {
			// Cannot happen (the invariant above); refuse rather than
			// leave a segment with a gap.
			j.werr = errors.New("journal: write behind: records not in the tail")
			err := j.werr
			j.mu.Unlock()
			return err
		}
		s.refs++
		ws = append(ws, behindWrite{s: s, off: lo - s.base, parts: parts})
	}
	j.mu.Unlock()
	if len(ws) == 0 {
		return nil
	}

	var werr error
	for _, w := range ws {
		off := w.off
		for _, p := range w.parts {
			if _, err := w.s.f.WriteAt(p, off); err != nil {
				werr = fmt.Errorf("journal: write %s: %w", w.s.path, err)
				break
			}
			off += int64(len(p))
			j.written.Add(int64(len(p)))
		}
		if werr != nil {
			break
		}
	}

	var dead []*segment
	j.mu.Lock()
	for _, w := range ws {
		w.s.dirty = true
		dead = j.unrefLocked(w.s, dead)
	}
	if werr != nil {
		j.werr = werr
	} else {
		j.wpos = max(j.wpos, upto)
		j.trimTailLocked(0)
	}
	j.mu.Unlock()
	j.finalize(dead)
	return werr
}
