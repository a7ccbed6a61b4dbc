// Package wire is Tether's message protocol: the length-framed, versioned
// messages that travel inside an SSH channel between the client and a session
// host (relayed by the agent), and over the agent's local socket to a session
// host.
//
// A frame is a 4-byte big-endian length, then a 1-byte message type, then the
// payload; the length counts the type byte and the payload. Control messages
// (Hello, Request, Response, Event) carry JSON; the hot-path messages (Output,
// Stdin, Ack, StdinAck, Resize) are fixed binary layouts so that output is
// binary-safe and costs no encoding. docs/ARCHITECTURE.md describes the
// exchange.
package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Version is the protocol version a client and the agent send in Hello. A
// peer refuses a different version. 2: Request's overloaded Key and Value
// became Owner (remove), HelpCommand (module.help), ArgvEncoding (module
// run) and Reason (close); a version-1 peer would have read them wrongly
// without a word, so the versions refuse each other instead.
const Version = 2

// HostVersion is the version the agent and a session host speak over the
// session's local socket. It is separate from Version so that an upgraded
// agent keeps talking to the session hosts started before it: what the
// agent sends a host did not change in Version 2 (close's reason, which a
// version-1 host defaults to the same text, aside).
const HostVersion = 1

// MaxFrame is the default upper bound on one frame (type + payload). Output
// chunks are at most MaxChunk, so a frame stays well below it.
const MaxFrame = 1<<20 + 64

// MaxChunk is the largest data payload put into one Output or Stdin frame.
const MaxChunk = 256 << 10

// Type identifies a message.
type Type uint8

// Message types. Values are part of the protocol: never renumber.
const (
	THello    Type = 1  // JSON Hello, first frame in each direction
	TRequest  Type = 2  // JSON Request
	TResponse Type = 3  // JSON Response
	TOutput   Type = 4  // binary Output: one journal record
	TStdin    Type = 5  // binary Stdin: offset + bytes for the command's stdin
	TStdinEOF Type = 6  // binary offset: stdin ends there
	TStdinAck Type = 7  // binary offset: bytes of stdin the host has consumed
	TAck      Type = 8  // binary seq: output delivered by the client through seq
	TSignal   Type = 9  // JSON Signal for the running command
	TResize   Type = 10 // binary rows, cols of the client's terminal
	TEvent    Type = 11 // JSON Event: something happened to the attachment
	TEnd      Type = 12 // empty: the client has what it asked for and keeps the channel for another request
	TMux      Type = 13 // binary sub-stream id + inner frame, on a mux channel (mux.go)
)

func (t Type) String() string {
	switch t {
	case THello:
		return "hello"
	case TRequest:
		return "request"
	case TResponse:
		return "response"
	case TOutput:
		return "output"
	case TStdin:
		return "stdin"
	case TStdinEOF:
		return "stdin-eof"
	case TStdinAck:
		return "stdin-ack"
	case TAck:
		return "ack"
	case TSignal:
		return "signal"
	case TResize:
		return "resize"
	case TEvent:
		return "event"
	case TEnd:
		return "end"
	case TMux:
		return "mux"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ErrFrameTooLarge is returned when a peer announces a frame over the limit.
// The connection cannot be resynchronised after it and must be closed.
var ErrFrameTooLarge = errors.New("wire: frame exceeds size limit")

// Conn reads and writes frames on a stream. Reads must come from one
// goroutine; writes are serialised internally and may come from many.
type Conn struct {
	r   *bufio.Reader
	rw  io.ReadWriter
	max int

	wmu  sync.Mutex
	wbuf []byte
	rbuf []byte
	bulk *bulkBuf // ReadBulk: frames read in big reads and returned in place
}

// bulkBuf holds bytes read ahead of the frames returned: buf[start:end].
type bulkBuf struct {
	buf        []byte
	start, end int
}

// NewConn wraps rw. maxFrame <= 0 means MaxFrame.
func NewConn(rw io.ReadWriter, maxFrame int) *Conn {
	return NewConnBuffer(rw, maxFrame, 64<<10)
}

// NewConnBuffer is NewConn with a read buffer of bufSize bytes: small for a
// side that reads a few frames and then hands the stream on (the agent's
// relay reads bulk output around it), where 64 KiB per connection is most
// of the cost of a short request.
func NewConnBuffer(rw io.ReadWriter, maxFrame, bufSize int) *Conn {
	if maxFrame <= 0 {
		maxFrame = MaxFrame
	}
	return &Conn{r: bufio.NewReaderSize(rw, bufSize), rw: rw, max: maxFrame}
}

// Read returns the next frame. The payload is valid until the next Read.
func (c *Conn) Read() (Type, []byte, error) {
	if c.bulk != nil {
		return c.readBulk()
	}
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:4]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n == 0 {
		return 0, nil, errors.New("wire: empty frame")
	}
	if int64(n) > int64(c.max) {
		return 0, nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, c.max)
	}
	if cap(c.rbuf) < int(n) {
		c.rbuf = make([]byte, n)
	}
	buf := c.rbuf[:n]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return Type(buf[0]), buf[1:], nil
}

// Buffered is how many bytes of the stream are read ahead and not yet
// returned (0 in ReadBulk's mode, whose bytes Reader returns).
func (c *Conn) Buffered() int {
	if c.bulk != nil {
		return c.bulk.end - c.bulk.start
	}
	return c.r.Buffered()
}

// AwaitData waits until the peer has sent something or the stream ended:
// the error of a read that found it closed, nil otherwise. Nothing is
// consumed.
func (c *Conn) AwaitData() error {
	if c.Buffered() > 0 {
		return nil
	}
	_, err := c.r.Peek(1)
	return err
}

// FrameBuffered reports whether Read would return a whole frame from what
// is already buffered, without reading the stream.
func (c *Conn) FrameBuffered() bool {
	if c.bulk != nil {
		return false
	}
	hdr, err := c.r.Peek(min(4, c.r.Buffered()))
	if err != nil || len(hdr) < 4 {
		return false
	}
	return c.r.Buffered() >= 4+int(binary.BigEndian.Uint32(hdr))
}

// AppendFrame appends the frame of type t with payload to b, for WriteFrame:
// several frames in one write.
func AppendFrame(b []byte, t Type, payload []byte) Frame {
	b = binary.BigEndian.AppendUint32(b, uint32(1+len(payload)))
	return append(append(b, byte(t)), payload...)
}

// AppendU64Frame is AppendFrame of what WriteU64(t, v, nil) sends.
func AppendU64Frame(b []byte, t Type, v uint64) Frame {
	return AppendFrame(b, t, binary.BigEndian.AppendUint64(nil, v))
}

// Write sends one frame made of the type and the concatenation of parts.
func (c *Conn) Write(t Type, parts ...[]byte) error {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	if n > c.max {
		return fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, t, n, c.max)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := append(c.wbuf[:0], 0, 0, 0, 0, byte(t))
	binary.BigEndian.PutUint32(buf, uint32(n))
	for _, p := range parts {
		buf = append(buf, p...)
	}
	_, err := c.rw.Write(buf)
	if cap(buf) <= 2*MaxChunk {
		c.wbuf = buf
	}
	return err
}

// WriteJSON sends v as a JSON frame of type t.
func (c *Conn) WriteJSON(t Type, v any) error {
	b, err := encodeJSON(t, v)
	if err != nil {
		return err
	}
	return c.Write(t, b)
}

// encodeJSON is a JSON frame's payload: the hand-written encoders for the
// per-request messages, encoding/json for the rest.
func encodeJSON(t Type, v any) ([]byte, error) {
	var b []byte
	var err error
	switch m := v.(type) {
	case Hello:
		b, err = marshalHello(m)
	case Request:
		b, err = marshalRequest(m)
	case *Request:
		if m == nil {
			b, err = json.Marshal(v)
			break
		}
		b, err = marshalRequest(*m)
	case Response:
		b, err = marshalResponse(&m)
	case *Response:
		if m == nil {
			b, err = json.Marshal(v)
			break
		}
		b, err = marshalResponse(m)
	default:
		b, err = json.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", t, err)
	}
	return b, nil
}

// DecodeJSON decodes a JSON payload of a frame of type t.
func DecodeJSON(t Type, payload []byte, v any) error {
	var err error
	switch m := v.(type) {
	case *Hello:
		err = unmarshalHello(payload, m)
	case *Response:
		err = unmarshalResponse(payload, m)
	case *Request:
		err = unmarshalRequest(payload, m)
	default:
		err = json.Unmarshal(payload, v)
	}
	if err != nil {
		return fmt.Errorf("wire: decode %s: %w", t, err)
	}
	return nil
}

// ReadJSON reads the next frame, requires type want, and decodes it into v.
func (c *Conn) ReadJSON(want Type, v any) error {
	t, p, err := c.Read()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("wire: got %s message, want %s", t, want)
	}
	return DecodeJSON(t, p, v)
}

// Reader returns the buffered reader behind Read, for a relay that hands the
// rest of the stream (including bytes already buffered) to another peer.
// After it, the Conn must not be read.
func (c *Conn) Reader() io.Reader {
	if b := c.bulk; b != nil && b.end > b.start {
		return io.MultiReader(bytes.NewReader(b.buf[b.start:b.end]), c.r)
	}
	return c.r
}

// ReadBulk makes the following Reads read the stream size bytes at a time
// (everything the peer has sent, up to size) and return each frame's
// payload in place, where Read otherwise reads at most its 64 KiB buffer
// or the rest of one frame and copies the payload out: for a side about to
// receive bulk output. Over an SSH channel each read is a lock, often a
// wake-up, and a window adjust (x/crypto/ssh sends one on a read once 96
// KiB are unacknowledged), so a few big reads cost less than many small
// ones (#18). size is allocated once; EndBulk gives it back.
func (c *Conn) ReadBulk(size int) {
	if c.bulk == nil {
		c.bulk = &bulkBuf{buf: make([]byte, max(size, 64<<10))}
	}
}

// EndBulk returns to Read's small buffer once nothing read ahead is left
// (the bulk buffer is dropped), for a channel kept idle for its next
// request; bytes still read ahead keep ReadBulk's mode until read.
func (c *Conn) EndBulk() {
	if b := c.bulk; b != nil && b.start == b.end {
		c.bulk = nil
	}
}

// readBulk is Read in ReadBulk's mode.
func (c *Conn) readBulk() (Type, []byte, error) {
	b := c.bulk
	if err := c.fillBulk(4); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(b.buf[b.start:])
	if n == 0 {
		return 0, nil, errors.New("wire: empty frame")
	}
	if int64(n) > int64(c.max) {
		return 0, nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, c.max)
	}
	need := 4 + int(n)
	if err := c.fillBulk(need); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	p := b.buf[b.start+4 : b.start+need]
	b.start += need
	return Type(p[0]), p[1:], nil
}

// fillBulk reads until k bytes are buffered, as one read of all the room
// left where it can: io.EOF when the stream ended before any of them,
// io.ErrUnexpectedEOF when it ended after some.
func (c *Conn) fillBulk(k int) error {
	b := c.bulk
	if b.start == b.end {
		b.start, b.end = 0, 0
	}
	for b.end-b.start < k {
		if k > len(b.buf) { // a frame larger than the buffer (at most c.max)
			nb := make([]byte, k)
			b.end = copy(nb, b.buf[b.start:b.end])
			b.buf, b.start = nb, 0
		} else if b.start > 0 && (len(b.buf)-b.start < k || len(b.buf)-b.end < len(b.buf)/4) {
			// Move the partial frame to the front: less than a frame is
			// copied, and the next read gets most of the buffer.
			b.end = copy(b.buf, b.buf[b.start:b.end])
			b.start = 0
		}
		m, err := c.r.Read(b.buf[b.end:])
		b.end += m
		if err != nil {
			if b.end-b.start >= k {
				return nil
			}
			if err == io.EOF && b.end > b.start {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// MaxSessionsMarker is the comment in an agent's SSH version string that
// advertises the MaxSessionsPerConnection holding for the connection
// ("SSH-2.0-tether max-sessions=10"): a client knows its channel cap at
// the handshake, before it opens the first channel. No marker, no limit.
const MaxSessionsMarker = "max-sessions="

// ParseMaxSessions reads the MaxSessionsPerConnection an agent advertises
// in its SSH version string; 0 means it advertised none.
func ParseMaxSessions(serverVersion string) int {
	_, comment, ok := strings.Cut(serverVersion, " ")
	if !ok {
		return 0
	}
	for _, f := range strings.Fields(comment) {
		if v, ok := strings.CutPrefix(f, MaxSessionsMarker); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}
