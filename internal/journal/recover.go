package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

const (
	ackFileName = "ack"
	ackFileSize = 12 // seq uint64 + CRC-32C of it
)

// recover rebuilds the in-memory state from the segment files and the ack
// file. Scanning stops at the first bad record: that segment is truncated and
// all later segments are deleted, so the retained records are always
// contiguous.
func (j *Journal) recover() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	var firsts []uint64
	for _, e := range ents {
		if first, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)

	ackMark, ackOK, err := readAck(filepath.Join(j.dir, ackFileName))
	if err != nil {
		return err
	}
	next := uint64(1)
	if ackMark > MaxSeq {
		ackOK = false
	}
	if ackOK {
		next = max(next, ackMark+1)
	}

	var expect uint64 // first seq the next segment must start with; 0: any
	broken := false
	for _, first := range firsts {
		path := filepath.Join(j.dir, segName(first))
		if broken || first == 0 || first > MaxSeq || (expect != 0 && first != expect) {
			// After corruption, a gap or an impossible name: discard.
			broken = true
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			j.dirDirty = true
			continue
		}
		s, clean, err := scanSegment(path, first)
		if err != nil {
			return err
		}
		if !clean {
			broken = true
			j.dirDirty = true
		}
		if s.n() == 0 {
			// Empty (or wholly corrupt) segment: its name still tells
			// where numbering had got to.
			next = max(next, first)
			s.f.Close()
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			j.dirDirty = true
			continue
		}
		s.base = j.endPos
		j.endPos += s.size
		j.segs = append(j.segs, s)
		expect = s.last() + 1
		next = max(next, expect)
	}
	j.next = next

	if ackOK {
		j.acked = min(ackMark, next-1)
		j.ackSaved, j.ackSavedOK = ackMark, true
		j.ackWritten, j.ackWrittenOK = ackMark, true
	}
	// Delete fully acknowledged segments, including the last one.
	var dead []*segment
	for len(j.segs) > 0 && j.segs[0].last() <= j.acked {
		dead = append(dead, j.removeLocked(0))
	}
	j.finalize(dead)
	if len(j.segs) == 0 {
		// Keep a (possibly empty) segment file at all times: its name
		// preserves the numbering even if the ack file is behind.
		s, err := createSegment(j.dir, j.next, j.endPos)
		if err != nil {
			return err
		}
		j.segs = append(j.segs, s)
		j.dirDirty = true
	}

	j.wpos = j.endPos // what recovery found is in the files
	f, err := os.OpenFile(filepath.Join(j.dir, ackFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.ackFile = f
	return nil
}

// readAck reads the persisted acked mark. A missing or damaged file is
// reported as !ok (everything retained is then considered unacknowledged).
func readAck(path string) (seq uint64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("journal: %w", err)
	}
	if len(b) != ackFileSize || crc32.Checksum(b[:8], castagnoli()) != binary.BigEndian.Uint32(b[8:]) {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(b[:8]), true, nil
}

func encodeAck(seq uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, ackFileSize), seq)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli()))
}
