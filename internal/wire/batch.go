package wire

import (
	"encoding/binary"
	"fmt"
	"net"
)

// WriteOutputs sends each of outs as one Output frame, all in one write
// when the stream supports it (a writev on a socket: the data are not
// copied into a frame buffer). Frames from other writers are not
// interleaved with them.
func (c *Conn) WriteOutputs(outs []Output) error {
	if len(outs) == 0 {
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
	heads := make([]byte, 0, size) // never grows: slices of it stay valid
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
