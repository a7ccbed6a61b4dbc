package journal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	segSuffix  = ".seg"
	segNameLen = 20 + len(segSuffix)
	// maxSegOffset bounds record offsets so they fit the uint32 index.
	maxSegOffset = math.MaxUint32 - 2*MaxRecordBytes
)

// entry is the in-memory index of one record within its segment.
type entry struct {
	off uint32 // offset of the record in the segment file
	out uint32 // stdout/stderr payload bytes of the segment's records before this one
}

// dropMark remembers a KindDropped record so that its count is carried over
// when the record itself is dropped.
type dropMark struct {
	seq uint64
	n   uint64
}

// segment is one file of the journal. Its records have the consecutive
// sequence numbers first, first+1, ...; entries[i] describes first+i.
// All fields except f and path are guarded by Journal.mu.
type segment struct {
	first    uint64
	path     string
	f        *os.File
	size     int64 // bytes of valid records in the file
	base     int64 // logical journal position of offset 0
	entries  []entry
	outTotal uint32 // stdout/stderr payload bytes in the segment
	drops    []dropMark

	dirty   bool // written since last fsync
	sealed  bool // takes no more records: its acknowledged bytes were never written (behind.go)
	refs    int  // readers/syncers using f outside the lock
	removed bool // delete file once refs reaches 0
	closing bool // close file once refs reaches 0
}

func segName(first uint64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

// parseSegName returns the first seq encoded in a segment file name.
func parseSegName(name string) (uint64, bool) {
	if len(name) != segNameLen || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	digits := name[:20]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil
}

func (s *segment) n() int { return len(s.entries) }

// last returns the seq of the last record; only meaningful if n() > 0.
func (s *segment) last() uint64 { return s.first + uint64(len(s.entries)) - 1 }

// end returns the end offset of record index k.
func (s *segment) end(k int) int64 {
	if k+1 < len(s.entries) {
		return int64(s.entries[k+1].off)
	}
	return s.size
}

// add indexes a record of kind and dataLen written at offset s.size.
func (s *segment) add(seq uint64, kind Kind, data []byte) {
	s.entries = append(s.entries, entry{off: uint32(s.size), out: s.outTotal})
	s.size += int64(EncodedSize(len(data)))
	if kind == KindStdout || kind == KindStderr {
		s.outTotal += uint32(len(data))
	}
	if kind == KindDropped && len(data) == 8 {
		s.drops = append(s.drops, dropMark{seq: seq, n: beUint64(data)})
	}
}

// createSegment creates an empty segment file for records starting at first.
func createSegment(dir string, first uint64, base int64) (*segment, error) {
	path := filepath.Join(dir, segName(first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: create segment: %w", err)
	}
	return &segment{first: first, path: path, f: f, base: base}, nil
}

// scanSegment opens an existing segment and indexes its records. It stops at
// the first torn, corrupt or out-of-sequence record and truncates the file
// there; clean reports whether the whole file was valid.
func scanSegment(path string, first uint64) (s *segment, clean bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("journal: open segment: %w", err)
	}
	s = &segment{first: first, path: path, f: f}
	br := bufio.NewReaderSize(f, 64<<10)
	buf := make([]byte, HeaderSize, 64<<10)
	clean = true
	for {
		if _, err := io.ReadFull(br, buf[:HeaderSize]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				clean = false
			} else if !errors.Is(err, io.EOF) {
				f.Close()
				return nil, false, fmt.Errorf("journal: read segment %s: %w", path, err)
			}
			break
		}
		dl, err := dataLen(buf)
		if err != nil || s.size > maxSegOffset {
			clean = false
			break
		}
		n := HeaderSize + dl
		if cap(buf) < n {
			nb := make([]byte, n)
			copy(nb, buf[:HeaderSize])
			buf = nb
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf[HeaderSize:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				clean = false
				break
			}
			f.Close()
			return nil, false, fmt.Errorf("journal: read segment %s: %w", path, err)
		}
		r, _, err := DecodeRecord(buf)
		if err != nil || r.Seq != first+uint64(s.n()) || r.Seq > MaxSeq {
			clean = false
			break
		}
		s.add(r.Seq, r.Kind, r.Data)
	}
	if !clean {
		if err := f.Truncate(s.size); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("journal: truncate segment %s: %w", path, err)
		}
		s.dirty = true
	}
	return s, clean, nil
}
