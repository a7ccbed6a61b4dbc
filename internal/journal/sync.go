package journal

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// syncLoop fsyncs dirty segments and persists the acked mark, at most
// every syncInterval, until Close. It sleeps while nothing changes, so a
// thousand idle sessions cost no wakeups.
func (j *Journal) syncLoop() {
	defer close(j.done)
	t := time.NewTimer(j.syncInterval)
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
		case <-t.C:
		}
		j.syncNow() // errors resurface from Sync/Close
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

func (j *Journal) syncNow() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()

	j.mu.Lock()
	var segs []*segment
	for _, s := range j.segs {
		if s.dirty {
			s.dirty = false
			s.refs++
			segs = append(segs, s)
		}
	}
	acked := j.acked
	writeAck := !j.ackSavedOK || acked != j.ackSaved
	dirDirty := j.dirDirty
	j.dirDirty = false
	j.mu.Unlock()

	var errs []error
	var failed []*segment
	for _, s := range segs {
		if err := s.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("journal: fsync %s: %w", s.path, err))
			failed = append(failed, s)
		}
	}
	ackOK := false
	if writeAck && j.ackFile != nil {
		if _, err := j.ackFile.WriteAt(encodeAck(acked), 0); err != nil {
			errs = append(errs, fmt.Errorf("journal: write ack: %w", err))
		} else if err := j.ackFile.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("journal: fsync ack: %w", err))
		} else {
			ackOK = true
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
	if ackOK {
		j.ackSaved, j.ackSavedOK = acked, true
	}
	if dirFailed {
		j.dirDirty = true
	}
	j.mu.Unlock()
	finalize(dead)
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
