package wire

import (
	"encoding/binary"
	"fmt"
	"net"
)

// Frame is one whole frame, encoded ahead of its write (FrameJSON), so
// that it can go out in the same write as the frames after it.
type Frame []byte

// FrameJSON encodes v as a JSON frame of type t.
func (c *Conn) FrameJSON(t Type, v any) (Frame, error) {
	b, err := encodeJSON(t, v)
	if err != nil {
		return nil, err
	}
	if 1+len(b) > c.max {
		return nil, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, t, 1+len(b), c.max)
	}
	f := binary.BigEndian.AppendUint32(make(Frame, 0, 5+len(b)), uint32(1+len(b)))
	return append(append(f, byte(t)), b...), nil
}

// WriteFrame sends a frame encoded by FrameJSON.
func (c *Conn) WriteFrame(f Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rw.Write(f)
	return err
}

// WriteOutputs sends each of outs as one Output frame, all in one write
// when the stream supports it (a writev on a socket: the data are not
// copied into a frame buffer). Frames from other writers are not
// interleaved with them.
func (c *Conn) WriteOutputs(outs []Output) error { return c.WriteOutputsAfter(nil, outs) }

// WriteOutputsAfter is WriteOutputs with first (nil: none) sent before
// outs, in the same write: a run's response and the records that are
// ready with it cost the peers on the way one read and one packet each,
// not two (#18: a builtin `true`'s exit record is journalled before its
// response is written).
func (c *Conn) WriteOutputsAfter(first Frame, outs []Output) error {
	if len(outs) == 0 {
		if first != nil {
			return c.WriteFrame(first)
		}
		return nil
	}
	// Small data are copied next to their header: a writev entry costs
	// more than copying a few bytes.
	const hdr, small = 5 + outputHeader, 4 << 10
	size := 0
	for _, o := range outs {
		size += hdr
		if len(o.Data) <= small {
			size += len(o.Data)
		}
	}
	size += len(first)
	heads := make([]byte, 0, size) // never grows: slices of it stay valid
	heads = append(heads, first...)
	bufs := make(net.Buffers, 0, 2*len(outs))
	start := 0
	for _, o := range outs {
		n := 1 + outputHeader + len(o.Data)
		if n > c.max {
			return fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, TOutput, n, c.max)
		}
		heads = binary.BigEndian.AppendUint32(heads, uint32(n))
		heads = append(heads, byte(TOutput))
		var h [outputHeader]byte
		heads = append(heads, OutputHeader(&h, o)...)
		if len(o.Data) <= small {
			heads = append(heads, o.Data...)
			continue
		}
		bufs = append(bufs, heads[start:len(heads):len(heads)], o.Data)
		start = len(heads)
	}
	if start < len(heads) {
		bufs = append(bufs, heads[start:])
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := bufs.WriteTo(c.rw)
	return err
}
