package sshconn

import (
	"io"
	"sync"
	"syscall"
)

// The read side. x/crypto/ssh reads through a 4 KiB bufio.Reader: for each
// packet it fills the buffer (a read of 4 KiB) and then reads the rest of a
// longer packet straight into its own buffer, so a 1 GiB stream of 32 KiB
// packets costs two read system calls per packet, 65,536 in all (#18). Conn
// reads a socket with data waiting into a buffer of readAheadBytes and
// serves the following reads from it: one system call for several packets,
// for one more copy (within the cache) of the bytes.
//
// The buffer is borrowed from a pool only while it holds unread bytes, and
// taken only once the socket is readable (the wait needs none), so that an
// idle connection, or one of a thousand waiting on quiet commands, holds
// no buffer.

// readAheadBytes is the most one read system call takes: a few packets.
const readAheadBytes = 128 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readAheadBytes); return &b }}

// rawReader is what Conn reads a socket through when it can.
type rawReader interface {
	SyscallConn() (syscall.RawConn, error)
}

// reader is Conn's read state; Read is called by one goroutine at a time
// (x/crypto/ssh's read loop), rmu only keeps a stray concurrent Read safe.
type reader struct {
	rmu   sync.Mutex
	raw   syscall.RawConn // nil: plain reads of the wrapped connection
	buf   *[]byte         // borrowed while it holds buf[off:end]
	off   int
	end   int
	reads int // read system calls made through buf (for tests)

	readFd func(fd uintptr) bool // r.read, made once (a closure per Read allocated)
	n      int                   // read's result
	errno  error
}

func (c *Conn) initRead() {
	if rr, ok := c.Conn.(rawReader); ok {
		if raw, err := rr.SyscallConn(); err == nil {
			c.r.raw = raw
			c.r.readFd = c.r.read
		}
	}
}

// Read returns buffered bytes, or reads the socket into a borrowed buffer
// of readAheadBytes (a read at least that large goes straight into p).
func (c *Conn) Read(p []byte) (int, error) {
	r := &c.r
	if r.raw == nil || len(p) == 0 {
		return c.Conn.Read(p)
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	if r.off < r.end {
		return r.take(p), nil
	}
	if len(p) >= readAheadBytes {
		return c.Conn.Read(p)
	}
	err := r.raw.Read(r.readFd)
	n := r.n
	if err == nil && r.errno != nil {
		err = &readError{r.errno}
	}
	if err != nil || n <= 0 {
		r.release()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	r.reads++
	r.off, r.end = 0, n
	return r.take(p), nil
}

// read is the raw connection's read callback: it borrows the buffer only
// for a read that does not find the socket empty.
func (r *reader) read(fd uintptr) bool {
	b := readBufs.Get().(*[]byte)
	for {
		r.n, r.errno = syscall.Read(int(fd), *b)
		if r.errno != syscall.EINTR {
			break
		}
	}
	if r.errno == syscall.EAGAIN {
		readBufs.Put(b)
		return false // wait until readable, holding no buffer
	}
	r.buf = b
	return true
}

// take copies buffered bytes into p, giving the buffer back once it is empty.
func (r *reader) take(p []byte) int {
	n := copy(p, (*r.buf)[r.off:r.end])
	if r.off += n; r.off == r.end {
		r.release()
	}
	return n
}

func (r *reader) release() {
	if r.buf != nil {
		readBufs.Put(r.buf)
		r.buf = nil
	}
	r.off, r.end = 0, 0
}

// readError is a failed read system call, as net.Conn's Read reports one.
type readError struct{ errno error }

func (e *readError) Error() string { return "read: " + e.errno.Error() }
func (e *readError) Unwrap() error { return e.errno }

// ReadCalls reports how many read system calls went through the read-ahead
// buffer (for tests).
func (c *Conn) ReadCalls() int {
	c.r.rmu.Lock()
	defer c.r.rmu.Unlock()
	return c.r.reads
}
