package journal

import (
	"errors"
	"fmt"
	"os"
)

// syncLoop makes records durable, at most every syncInterval, until Close.
// It sleeps while nothing changes, so a thousand idle sessions cost no
// wakeups.
//
// Durability: a record is fsync'd (with the directory entry of its
// segment) once it has stayed unacknowledged for a whole sync interval,
// so within about two intervals of being appended. A record a client
// acknowledges before that is never fsync'd: it has been delivered, and a
// client that keeps up makes the journal cost no disk writes at all. The
// acknowledged mark is written to the ack file in the round after it
// changes (so it survives a crash of the session host) and fsync'd only
// with records or by Sync and Close: after a power loss the session host is
// gone with the machine, and a stale mark could at worst offer a few
// delivered records again, which an attaching client skips by sequence
// number. A round that only wrote the mark does not ask for another, so a
// session that just delivered a command's output costs one wakeup, not a
// second of them.
func (j *Journal) syncLoop() {
	defer close(j.done)
	t := j.clock.NewTimer(j.syncInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-j.kick:
		}
		t.Reset(j.syncInterval) // batch what arrives meanwhile
		select {
		case <-j.stop:
			return
		case <-t.C():
		}
		j.syncRound(false) // errors resurface from Sync/Close
	}
}

// Sync fsyncs written segments, the acked mark and directory changes.
func (j *Journal) Sync() error {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return j.syncNow()
}

func (j *Journal) syncNow() error { return j.syncRound(true) }

// syncRound persists what needs it. With all, everything is made durable;
// otherwise only records unacknowledged since the previous round are (see
// syncLoop).
func (j *Journal) syncRound(all bool) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()

	var errs []error
	behindFailed := false
	j.mu.Lock()
	ackPos := j.ackPosLocked()
	durable := all || ackPos < j.syncMark
	if durable && j.wposLocked() < j.endPos {
		// Records to make durable are first written (behind.go).
		upto := j.endPos
		j.mu.Unlock()
		if err := j.writeBehind(upto); err != nil {
			errs = append(errs, err)
			behindFailed = true
		}
		j.mu.Lock()
		ackPos = j.ackPosLocked()
	}
	var segs []*segment
	// Unacknowledged records not yet written become due next round.
	pending := !durable && max(j.wposLocked(), ackPos) < j.endPos
	for _, s := range j.segs {
		if !s.dirty {
			continue
		}
		if s.base+s.size <= ackPos {
			s.dirty = false // delivered: nothing to keep
			continue
		}
		if !durable {
			pending = true
			continue
		}
		s.dirty = false
		s.refs++
		segs = append(segs, s)
	}
	endPos := j.endPos
	j.syncMark = endPos
	acked := j.acked
	writeAck := !j.ackWrittenOK || acked != j.ackWritten
	syncAck := durable && (!j.ackSavedOK || acked != j.ackSaved)
	dirDirty := j.dirDirty && durable
	if dirDirty {
		j.dirDirty = false
	}
	if j.ageSpare() {
		pending = true
	}
	if pending {
		// Look again next round: these become due unless acknowledged.
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	j.mu.Unlock()

	var failed []*segment
	for _, s := range segs {
		j.fsyncs.Add(1)
		if err := s.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("journal: fsync %s: %w", s.path, err))
			failed = append(failed, s)
		}
	}
	ackWritten, ackSynced := false, false
	if j.ackFile != nil && (writeAck || syncAck) {
		var err error
		if writeAck {
			if _, err = j.ackFile.WriteAt(encodeAck(acked), 0); err != nil {
				errs = append(errs, fmt.Errorf("journal: write ack: %w", err))
			} else {
				ackWritten = true
			}
		}
		if err == nil && syncAck {
			if err := j.ackFile.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("journal: fsync ack: %w", err))
			} else {
				ackSynced = true
			}
		}
	}
	dirFailed := false
	if dirDirty {
		if err := syncDir(j.dir); err != nil {
			errs = append(errs, err)
			dirFailed = true
		}
	}

	var dead []*segment
	j.mu.Lock()
	for _, s := range failed {
		s.dirty = true
	}
	for _, s := range segs {
		dead = j.unrefLocked(s, dead)
	}
	if ackWritten {
		j.ackWritten, j.ackWrittenOK = acked, true
	}
	if ackSynced {
		j.ackSaved, j.ackSavedOK = acked, true
	}
	if dirFailed {
		j.dirDirty = true
	}
	if durable && len(failed) == 0 && !behindFailed {
		// Durable records need not stay in memory: a client that did not
		// take them within a sync interval reads them from the files.
		j.trimTailLocked(endPos)
		j.free = nil // an idle session holds no spare arrays either
	}
	j.mu.Unlock()
	j.finalize(dead)
	return errors.Join(errs...)
}

// syncDir fsyncs a directory so that created and deleted files persist.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: fsync dir: %w", err)
	}
	return nil
}
