// Package pipesize grows pipes that turn out to carry bulk data.
//
// A pipe starts at the kernel's 64 KiB, so a reader of a program streaming
// data wakes up and makes a syscall for every 64 KiB at most, and the writer
// blocks as often. A pipe grown to Bulk lets the writer run that far ahead
// and the reader take that much per read (#18: the session host's reads of a
// command's output, the client's reads of its stdin). Pipes are grown only
// once they carry bulk data, so that quiet ones do not count against the
// user's pipe allowance (fs.pipe-user-pages-soft: past it, that user's new
// pipes get a single page). A leaf: the client and the session host use it.
package pipesize

import (
	"os"

	"golang.org/x/sys/unix"
)

// Bulk is the size a bulk pipe is grown to, and the read buffer that goes
// with it.
const Bulk = 1 << 20

// Grow makes the pipe f Bulk bytes if it can. It fails, harmlessly, when f
// is not a pipe or the user's allowance is spent; the pipe is as before.
func Grow(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		_, ferr = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, Bulk)
	}); err != nil {
		return err
	}
	return ferr
}
