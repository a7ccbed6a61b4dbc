// Package rawio reads and writes a non-blocking, pollable descriptor (a
// socket, a pipe from os.Pipe) with raw system calls: calls that do not
// tell the Go scheduler they are in the kernel.
//
// A bulk write on loopback takes tens of microseconds (a 32 KiB TCP write
// runs the receiver's TCP input too). Go's sysmon takes the processor from
// a thread that has been in a system call for 20 µs and hands it to another
// thread, which the call's return then has to take back, and while it
// keeps doing so it polls every 20 µs: per GiB of output thousands of
// futex wake-ups and context switches in the agent and the client (#18).
// The descriptor is non-blocking, so a raw call never waits: it returns
// EAGAIN, and the runtime's poller waits for the descriptor as for any
// other read or write (syscall.RawConn), deadlines included. For bulk
// calls that cannot block only: a disk file's write may, and goes through
// os.File as before. And only where the process has a processor to spare:
// a raw call keeps its P, so in a process with one (the session host) the
// other goroutines wait for it — there a MiB pipe read kept the socket
// writer from running beside it, and output measured slower.
package rawio

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FD is one descriptor's raw reads and writes. A Read and a Write may run
// at once; Reads are serialized, as are Writes.
type FD struct {
	raw syscall.RawConn

	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool // f.read, made once: a closure per call allocates

	wmu     sync.Mutex
	iov     []syscall.Iovec // iov[wlo:] is left to write
	wlo     int
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// ErrBlocking is New's answer for a descriptor in blocking mode.
var ErrBlocking = errors.New("rawio: descriptor is in blocking mode")

// New returns c's raw reads and writes, or an error when c has no
// descriptor to poll (an os.File of a regular file) or it is in blocking
// mode.
func New(c syscall.Conn) (*FD, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	f := &FD{raw: raw, iov: make([]syscall.Iovec, 0, 4)}
	f.readFn, f.writeFn = f.read, f.write
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return f, nil // the net package's sockets are always non-blocking
	}
	// A blocking descriptor (os.NewFile of one, a file given by a parent)
	// would hold the processor while a raw call waits.
	var fl int
	var ferr error
	if err := raw.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
		return nil, err
	}
	if ferr != nil {
		return nil, ferr
	}
	if fl&unix.O_NONBLOCK == 0 {
		return nil, ErrBlocking
	}
	return f, nil
}

// Read reads into p as read(2) does; io.EOF at the end.
func (f *FD) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f.rmu.Lock()
	defer f.rmu.Unlock()
	f.rbuf, f.rn, f.rerrno = p, 0, 0
	err := f.raw.Read(f.readFn)
	f.rbuf = nil
	if err != nil {
		return 0, err
	}
	if f.rerrno != 0 {
		return 0, &Error{Op: "read", Errno: f.rerrno}
	}
	if f.rn == 0 {
		return 0, io.EOF
	}
	return f.rn, nil
}

func (f *FD) read(fd uintptr) bool {
	n, err := ReadFd(fd, f.rbuf)
	switch err {
	case nil:
		f.rn = n
	case syscall.EAGAIN:
		return false // wait until readable
	default:
		f.rerrno = err.(syscall.Errno)
	}
	return true
}

// ReadFd is one raw read(2) of the non-blocking fd into p (len(p) > 0),
// retried on EINTR, for a syscall.RawConn's Read callback: n is -1 when err
// is set (a syscall.Errno; EAGAIN when there is nothing to read yet).
func ReadFd(fd uintptr, p []byte) (n int, err error) {
	for {
		k, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == 0 {
			return int(k), nil
		}
		if e != syscall.EINTR {
			return -1, e
		}
	}
}

// Write writes p in full.
func (f *FD) Write(p []byte) (int, error) {
	return f.Writev(p)
}

// Writev writes bufs in full, in one writev(2) where the descriptor takes
// them all at once.
func (f *FD) Writev(bufs ...[]byte) (int, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.iov, f.wlo, f.wn, f.werrno = f.iov[:0], 0, 0, 0
	for _, p := range bufs {
		if len(p) > 0 {
			v := syscall.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			f.iov = append(f.iov, v)
		}
	}
	if len(f.iov) == 0 {
		return 0, nil
	}
	err := f.raw.Write(f.writeFn)
	clear(f.iov) // do not keep the callers' buffers alive
	if err == nil && f.werrno != 0 {
		err = &Error{Op: "write", Errno: f.werrno}
	}
	return f.wn, err
}

// maxIov bounds one writev's entries (IOV_MAX).
const maxIov = 1024

func (f *FD) write(fd uintptr) bool {
	for f.wlo < len(f.iov) {
		iov := f.iov[f.wlo:]
		if len(iov) > maxIov {
			iov = iov[:maxIov]
		}
		k, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			f.werrno = e
			return true
		}
		f.wn += int(k)
		for rest := int(k); rest > 0; {
			v := &f.iov[f.wlo]
			if l := int(v.Len); rest >= l {
				rest -= l
				f.wlo++
			} else {
				v.Base = (*byte)(unsafe.Add(unsafe.Pointer(v.Base), rest))
				v.SetLen(l - rest)
				rest = 0
			}
		}
	}
	return true
}

// Error is a failed read or write system call.
type Error struct {
	Op    string
	Errno syscall.Errno
}

func (e *Error) Error() string { return e.Op + ": " + e.Errno.Error() }
func (e *Error) Unwrap() error { return e.Errno }
