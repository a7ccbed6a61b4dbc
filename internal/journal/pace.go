package journal

import (
	"time"

	"github.com/tether-sh/tether/internal/clock"
)

// Pacing: in Block mode, while a reader (the attached client's writer) is
// reading, Append waits for it once it is more than readAhead bytes behind,
// instead of running ahead until MaxBytes of records wait unacknowledged.
// The records a client reads are then still in the in-memory tail (tail.go)
// and are acknowledged before the sync loop would make them durable
// (sync.go), so a client that keeps up costs no file reads and no fsyncs.
// A reader that makes no progress for readerStall (a stuck or cut client)
// is no longer waited for: then only MaxBytes stops Append, as before.
// While a client acknowledges, Append also waits for its acks once more is
// unacknowledged than the tail holds beside a segment (ackAheadLocked), so
// that what the client keeps up with is never written behind (behind.go);
// acks that stop for readerStall are no longer waited for either.
// Drop mode never waits.
const (
	readAhead   = 4 << 20
	readerStall = time.Second
)

// ackAheadLocked is how far Append may run ahead of the acknowledged mark
// while a client is acknowledging (0: no bound). The tail holds the
// records from the start of the oldest retained segment (behind.go), so
// that is a segment and two arrays below the tail's bound: a client that
// keeps up then costs no writes behind. A tail too small for that is not
// paced by acks.
func (j *Journal) ackAheadLocked() int64 {
	if a := j.tailMax - j.segBytes - 2*tailChunkBytes; a >= readAhead/2 {
		return a
	}
	return 0
}

// readLocked notes that a reader has read up to logical position pos.
func (j *Journal) readLocked(pos int64) {
	if pos != j.readPos || j.readAt.IsZero() {
		j.readPos = pos
		j.readAt = j.clock.Now()
		if j.paced > 0 {
			j.notifyLocked()
		}
	}
}

// paceLocked returns how long Append should wait for the reader or for
// acks (0: not).
func (j *Journal) paceLocked() time.Duration {
	if j.mode != Block {
		return 0
	}
	var wait time.Duration
	if !j.readAt.IsZero() && j.endPos-j.readPos > readAhead {
		wait = readerStall - clock.Since(j.clock, j.readAt)
	}
	if a := j.ackAheadLocked(); a > 0 && !j.ackAt.IsZero() && j.endPos-j.ackPosLocked() > a {
		wait = max(wait, readerStall-clock.Since(j.clock, j.ackAt))
	}
	return wait
}
