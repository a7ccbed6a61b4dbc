package wire

import (
	"encoding/binary"
	"fmt"
)

// Kind is the type of a journal record, as an Output frame carries it. The
// session host journals records of these kinds (internal/journal stores
// them under the same values) and the client decodes them: the values are
// part of the protocol, never renumber.
type Kind uint8

// Record kinds.
const (
	KindStdout  Kind = 1 // a chunk of the command's standard output
	KindStderr  Kind = 2 // a chunk of the command's standard error
	KindStart   Kind = 3 // a command started; Data: its text
	KindExit    Kind = 4 // a command exited; Data: EncodeExit
	KindDropped Kind = 5 // Data: EncodeDropped, output bytes dropped
	KindInfo    Kind = 6 // informational message
)

func (k Kind) String() string {
	switch k {
	case KindStdout:
		return "stdout"
	case KindStderr:
		return "stderr"
	case KindStart:
		return "start"
	case KindExit:
		return "exit"
	case KindDropped:
		return "dropped"
	case KindInfo:
		return "info"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// EncodeExit is an exit record's payload: the exit status (4 bytes,
// big-endian, signed), then an optional message explaining it (a limit
// that stopped the command).
func EncodeExit(code int, msg string) []byte {
	b := make([]byte, 4, 4+len(msg))
	binary.BigEndian.PutUint32(b, uint32(int32(code)))
	return append(b, msg...)
}

// DecodeExit parses an exit record's payload.
func DecodeExit(p []byte) (code int, msg string, err error) {
	if len(p) < 4 {
		return 0, "", fmt.Errorf("wire: exit record of %d bytes is too short", len(p))
	}
	return int(int32(binary.BigEndian.Uint32(p))), string(p[4:]), nil
}

// EncodeDropped is a dropped record's payload: the count of output bytes
// the journal dropped, 8 bytes big-endian.
func EncodeDropped(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)
}

// DecodeDropped parses a dropped record's payload; a short one counts 0.
func DecodeDropped(p []byte) uint64 {
	if len(p) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}
