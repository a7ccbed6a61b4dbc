package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/tether-sh/tether/internal/wire"
)

// Kind is the type of a journal record. The kinds are protocol (the
// client decodes them from Output frames), so wire defines them; the
// journal stores them as they are.
type Kind = wire.Kind

// Record kinds, as wire defines them.
const (
	KindStdout  = wire.KindStdout
	KindStderr  = wire.KindStderr
	KindStart   = wire.KindStart
	KindExit    = wire.KindExit
	KindDropped = wire.KindDropped
	KindInfo    = wire.KindInfo
)

// Record is one entry of the journal.
type Record struct {
	Seq  uint64
	Kind Kind
	Cmd  uint32
	Data []byte
}

// Encoding of a record (all integers big-endian):
//
//	[0]      magic 0xA7
//	[1]      kind
//	[2:6]    cmd
//	[6:14]   seq
//	[14:18]  length of data
//	[18:22]  CRC-32C over bytes [0:18] followed by data
//	[22:]    data
const (
	// HeaderSize is the size of the fixed record header.
	HeaderSize = 22
	// MaxDataBytes is the largest data payload of a single record.
	MaxDataBytes = 1 << 20
	// MaxRecordBytes is the largest encoded record.
	MaxRecordBytes = HeaderSize + MaxDataBytes

	recordMagic = 0xA7
	crcOff      = 18
)

// castagnoli is built on first use: every tether process links the journal,
// and building the table costs a quarter of a millisecond of each CLI start.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// Errors returned by DecodeRecord (wrapped with details) and Append.
var (
	ErrTooLarge    = errors.New("journal: record too large")
	ErrShortRecord = errors.New("journal: short record")
	ErrBadMagic    = errors.New("journal: bad record magic")
	ErrBadCRC      = errors.New("journal: record checksum mismatch")
)

// EncodedSize returns the encoded size of a record with n bytes of data.
func EncodedSize(n int) int { return HeaderSize + n }

// AppendRecord appends the encoding of r to dst and returns the extended
// slice. Records with more than MaxDataBytes of data encode but do not
// decode (DecodeRecord reports ErrTooLarge).
func AppendRecord(dst []byte, r Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	dst = append(dst, r.Data...)
	sealRecord(dst[start:], r)
	return dst
}

// sealRecord writes the header of the record rec, whose data (all of
// rec after the header) is in place; r.Data is not used.
func sealRecord(rec []byte, r Record) {
	rec[0], rec[1] = recordMagic, byte(r.Kind)
	binary.BigEndian.PutUint32(rec[2:6], r.Cmd)
	binary.BigEndian.PutUint64(rec[6:14], r.Seq)
	binary.BigEndian.PutUint32(rec[14:18], uint32(len(rec)-HeaderSize))
	crc := crc32.Update(0, castagnoli(), rec[:crcOff])
	crc = crc32.Update(crc, castagnoli(), rec[HeaderSize:])
	binary.BigEndian.PutUint32(rec[crcOff:HeaderSize], crc)
}

// dataLen validates the header at the start of b and returns the length of
// the record's data. b must hold at least HeaderSize bytes.
func dataLen(b []byte) (int, error) {
	if b[0] != recordMagic {
		return 0, fmt.Errorf("%w: 0x%02x", ErrBadMagic, b[0])
	}
	n := binary.BigEndian.Uint32(b[14:18])
	if n > MaxDataBytes {
		return 0, fmt.Errorf("%w: %d bytes of data (max %d)", ErrTooLarge, n, MaxDataBytes)
	}
	return int(n), nil
}

// DecodeRecord decodes the record at the start of b and returns it with the
// number of bytes it occupies. r.Data aliases b. It never panics; errors wrap
// ErrShortRecord, ErrBadMagic, ErrTooLarge or ErrBadCRC.
func DecodeRecord(b []byte) (r Record, n int, err error) {
	if len(b) < HeaderSize {
		return Record{}, 0, fmt.Errorf("%w: %d bytes, header needs %d", ErrShortRecord, len(b), HeaderSize)
	}
	dl, err := dataLen(b)
	if err != nil {
		return Record{}, 0, err
	}
	n = HeaderSize + dl
	if len(b) < n {
		return Record{}, 0, fmt.Errorf("%w: %d bytes, record needs %d", ErrShortRecord, len(b), n)
	}
	crc := crc32.Update(0, castagnoli(), b[:crcOff])
	crc = crc32.Update(crc, castagnoli(), b[HeaderSize:n])
	if want := binary.BigEndian.Uint32(b[crcOff:HeaderSize]); crc != want {
		return Record{}, 0, fmt.Errorf("%w: computed %08x, stored %08x", ErrBadCRC, crc, want)
	}
	r = Record{
		Seq:  binary.BigEndian.Uint64(b[6:14]),
		Kind: Kind(b[1]),
		Cmd:  binary.BigEndian.Uint32(b[2:6]),
		Data: b[HeaderSize:n:n],
	}
	return r, n, nil
}
