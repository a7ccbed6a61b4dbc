package journal

import (
	"os"
	"path/filepath"
	"sync"
)

// The spare segment file. A client that keeps up makes Append roll a new
// segment every SegmentBytes and Ack delete the previous one. Creating a
// file, writing it into the page cache and deleting it again costs the
// kernel page allocation and freeing for every byte (ext4's delayed
// allocation, truncate_inode_pages): in #18's profile a quarter of the
// session host's CPU for bulk output. So one deleted segment's file is kept
// as the spare, under a name recovery ignores, and the next roll renames it
// and overwrites it in place: its pages are already cached. Bytes past a
// segment's records are stale records of older sequence numbers, which
// the recovery scan stops at (they are out of sequence). A spare unused for
// two sync rounds is deleted, so an idle session holds no file of it.
const spareName = "spare.tmp"

type spareFile struct {
	mu    sync.Mutex
	f     *os.File // nil: none
	stale bool     // parked at least one sync round ago
	shut  bool     // the journal closed: delete instead of parking
}

// park keeps s's file as the spare, or reports false when there is one
// already (or the journal is closing): then the caller deletes it.
func (j *Journal) park(s *segment) bool {
	sp := &j.spare
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.f != nil || sp.shut {
		return false
	}
	if err := os.Rename(s.path, filepath.Join(j.dir, spareName)); err != nil {
		return false
	}
	sp.f, sp.stale = s.f, false
	select { // a sync round will delete the spare if no roll takes it
	case j.kick <- struct{}{}:
	default:
	}
	return true
}

// takeSpare renames the spare to path and returns it, or nil when there is
// none.
func (j *Journal) takeSpare(path string) *os.File {
	sp := &j.spare
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.f == nil {
		return nil
	}
	f := sp.f
	sp.f = nil
	if err := os.Rename(filepath.Join(j.dir, spareName), path); err != nil {
		f.Close()
		os.Remove(filepath.Join(j.dir, spareName))
		return nil
	}
	return f
}

// ageSpare is called by each sync round: a spare that outlived a round is
// deleted. It reports whether a spare is still parked (the round then asks
// for another).
func (j *Journal) ageSpare() bool {
	sp := &j.spare
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.f == nil {
		return false
	}
	if !sp.stale {
		sp.stale = true
		return true
	}
	sp.dropLocked(j.dir)
	return false
}

// shutSpare deletes the spare and parks no more (Close).
func (j *Journal) shutSpare() {
	sp := &j.spare
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.shut = true
	if sp.f != nil {
		sp.dropLocked(j.dir)
	}
}

func (sp *spareFile) dropLocked(dir string) {
	sp.f.Close()
	sp.f = nil
	os.Remove(filepath.Join(dir, spareName))
}

// newSegment starts a segment for records from first, in the spare file
// when there is one.
func (j *Journal) newSegment(first uint64, base int64) (*segment, error) {
	path := filepath.Join(j.dir, segName(first))
	if f := j.takeSpare(path); f != nil {
		return &segment{first: first, path: path, f: f, base: base}, nil
	}
	j.creates.Add(1)
	return createSegment(j.dir, first, base)
}
