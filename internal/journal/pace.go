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
// Drop mode never waits for readers.
const (
	readAhead   = 4 << 20
	readerStall = time.Second
)

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

// paceLocked returns how long Append should wait for the reader (0: not).
func (j *Journal) paceLocked() time.Duration {
	if j.mode != Block || j.readAt.IsZero() || j.endPos-j.readPos <= readAhead {
		return 0
	}
	return readerStall - clock.Since(j.clock, j.readAt)
}
