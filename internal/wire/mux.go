package wire

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// A mux channel (OpMux) carries many runs at once, each as a sub-stream:
// every frame of a sub-stream travels inside a TMux frame whose payload is
// the sub-stream's id (4 bytes, big-endian), then the inner frame's type
// and payload. A sub-stream starts with the client's TMux Request (a run
// of a named session, without stdin) and from there carries exactly what a
// channel of its own would have: the session host's Response and records
// one way, acks and signals the other. An inner type of MuxClose (no
// payload) ends the sub-stream in that direction, as closing a channel
// would. So a fan-out of K runs to one agent costs one SSH channel instead
// of K, while each run keeps its own output, exit status and acks.

// MuxClose, as a TMux frame's inner type, ends its sub-stream in the
// sender's direction.
const MuxClose Type = 0

// MaxMuxStreams is how many sub-streams an agent lets one mux channel run at
// once: a connection holds at most MaxSessionsPerConnection ×
// MaxMuxStreams runs.
const MaxMuxStreams = 16

// MuxMarker is the comment in an agent's SSH version string that says it
// serves OpMux, and with how many sub-streams per channel ("mux=16").
const MuxMarker = "mux="

// WriteMux sends the frame (t, payload) of sub-stream id inside a TMux frame.
func (c *Conn) WriteMux(id uint32, t Type, payload []byte) error {
	var h [5]byte
	binary.BigEndian.PutUint32(h[:4], id)
	h[4] = byte(t)
	return c.Write(TMux, h[:], payload)
}

// WriteMuxJSON is WriteJSON for sub-stream id.
func (c *Conn) WriteMuxJSON(id uint32, t Type, v any) error {
	b, err := encodeJSON(t, v)
	if err != nil {
		return err
	}
	return c.WriteMux(id, t, b)
}

// DecodeMux parses a TMux payload: the sub-stream, the inner frame's type
// and its payload (aliasing p).
func DecodeMux(p []byte) (id uint32, t Type, inner []byte, err error) {
	if len(p) < 5 {
		return 0, 0, nil, fmt.Errorf("wire: mux frame of %d bytes is too short", len(p))
	}
	return binary.BigEndian.Uint32(p[:4]), Type(p[4]), p[5:], nil
}

// ParseMux reads how many sub-streams per mux channel an agent advertises
// in its SSH version string; 0: it serves no OpMux.
func ParseMux(serverVersion string) int {
	_, comment, ok := strings.Cut(serverVersion, " ")
	if !ok {
		return 0
	}
	for _, f := range strings.Fields(comment) {
		if v, ok := strings.CutPrefix(f, MuxMarker); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}
