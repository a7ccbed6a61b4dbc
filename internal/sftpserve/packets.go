package sftpserve

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// SFTP v3 (draft-ietf-secsh-filexfer-02) packet types and flags that the
// fd-passing front (front.go) and relay (fdrelay.go) parse themselves.
const (
	fxpInit     = 1
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpFstat    = 8
	fxpFsetstat = 10
	fxpReaddir  = 12
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpAttrs    = 105
	fxpExtended = 200

	// fxpFD is private to the session host and the agent, never sent to
	// a client: "the fd that comes with this packet (SCM_RIGHTS) is the
	// file of handle H" (front.go). SFTP v3 leaves 201-255 unassigned
	// above the extended reply; the agent drops the packet either way.
	fxpFD = 0xF7

	fxfRead  = 0x01
	fxfWrite = 0x02
	fxfCreat = 0x08
	fxfTrunc = 0x10
	fxfExcl  = 0x20

	attrSize     = 0x1
	attrUIDGID   = 0x2
	attrPerms    = 0x4
	attrACMTime  = 0x8
	attrExtended = 0x80000000

	fxOK         = 0
	fxEOF        = 1
	fxNoSuchFile = 2
	fxPermission = 3
	fxFailure    = 4
	fxBadMessage = 5
	fxOpUnsupp   = 8
)

// maxMsg is pkg/sftp's limit on one packet (its maxMsgLength); a longer
// one ends the stream there too.
const maxMsg = 256 << 10

var errShort = errors.New("sftp: packet too short")

// parser reads the fields of one packet body.
type parser struct {
	b   []byte
	err error
}

func (p *parser) u32() uint32 {
	if len(p.b) < 4 {
		p.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint32(p.b)
	p.b = p.b[4:]
	return v
}

func (p *parser) u64() uint64 {
	if len(p.b) < 8 {
		p.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(p.b)
	p.b = p.b[8:]
	return v
}

// str returns a string field as a slice of the packet (no copy).
func (p *parser) str() []byte {
	n := p.u32()
	if p.err != nil || uint64(n) > uint64(len(p.b)) {
		p.err = errShort
		return nil
	}
	s := p.b[:n]
	p.b = p.b[n:]
	return s
}

// attrs are the fields of an SFTP ATTRS structure that were present.
type attrs struct {
	flags        uint32
	size         uint64
	uid, gid     uint32
	perms        uint32
	atime, mtime uint32
}

func (p *parser) attrs() attrs {
	var a attrs
	a.flags = p.u32()
	if a.flags&attrSize != 0 {
		a.size = p.u64()
	}
	if a.flags&attrUIDGID != 0 {
		a.uid, a.gid = p.u32(), p.u32()
	}
	if a.flags&attrPerms != 0 {
		a.perms = p.u32()
	}
	if a.flags&attrACMTime != 0 {
		a.atime, a.mtime = p.u32(), p.u32()
	}
	if a.flags&attrExtended != 0 {
		n := p.u32()
		for i := uint32(0); i < n && p.err == nil; i++ {
			p.str()
			p.str()
		}
	}
	return a
}

// Packet builders append a whole packet, length first.

func beginPacket(b []byte, typ byte, id uint32) ([]byte, int) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, typ)
	return binary.BigEndian.AppendUint32(b, id), start
}

func endPacket(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendStatus appends a STATUS packet for err (nil: OK) with pkg/sftp's
// codes and message (statusFromError), so a client sees the same error
// whichever process served the request.
func appendStatus(b []byte, id uint32, err error) []byte {
	b, start := beginPacket(b, fxpStatus, id)
	code, msg := uint32(fxOK), ""
	if err != nil {
		code, msg = statusCode(err), err.Error()
	}
	b = binary.BigEndian.AppendUint32(b, code)
	b = appendStr(b, msg)
	b = appendStr(b, "")
	return endPacket(b, start)
}

func statusCode(err error) uint32 {
	var errno syscall.Errno
	switch {
	case errors.Is(err, io.EOF):
		return fxEOF
	case os.IsNotExist(err):
		return fxNoSuchFile
	case errors.As(err, &errno) && (errno == syscall.EACCES || errno == syscall.EPERM):
		return fxPermission
	}
	return fxFailure
}

// appendAttrsPacket appends an ATTRS answer (FSTAT) as pkg/sftp's server
// fills it: size, uid/gid, mode and times.
func appendAttrsPacket(b []byte, id uint32, st *syscall.Stat_t) []byte {
	b, start := beginPacket(b, fxpAttrs, id)
	b = binary.BigEndian.AppendUint32(b, attrSize|attrUIDGID|attrPerms|attrACMTime)
	b = binary.BigEndian.AppendUint64(b, uint64(st.Size))
	b = binary.BigEndian.AppendUint32(b, st.Uid)
	b = binary.BigEndian.AppendUint32(b, st.Gid)
	b = binary.BigEndian.AppendUint32(b, st.Mode)
	b = binary.BigEndian.AppendUint32(b, uint32(st.Atim.Sec))
	b = binary.BigEndian.AppendUint32(b, uint32(st.Mtim.Sec))
	return endPacket(b, start)
}

// readPacket reads one whole packet (length included) into buf, growing
// it to at most maxMsg+4 bytes.
func readPacket(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) < 9 {
		buf = make([]byte, 0, 64<<10)
	}
	buf = buf[:4]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf[:0], err
	}
	n := binary.BigEndian.Uint32(buf)
	if n < 5 || n > maxMsg {
		return buf[:0], fmt.Errorf("sftp: packet of %d bytes; want 5 to %d", n, maxMsg)
	}
	if cap(buf) < int(n)+4 {
		nb := make([]byte, 4, int(n)+4)
		copy(nb, buf)
		buf = nb
	}
	buf = buf[:int(n)+4]
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf[:0], err
	}
	return buf, nil
}
