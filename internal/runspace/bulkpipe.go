package runspace

import (
	"os"

	"golang.org/x/sys/unix"
)

// A command's output pipe starts at the kernel's 64 KiB and is read in
// 32 KiB pieces: cheap for the many commands that print a line. A command
// that streams output fills such a read every time, and each read is a
// syscall and a wake-up of the session host (32,768 of them per GiB, #18).
// BulkPipe is the reader's side of growing the pipe, once, when a read comes
// back full: the pipe to BulkPipeBytes (the writer can then run ahead by that
// much) and the read buffer to the same size. Only pipes that carry bulk
// output grow, so quiet commands do not count against the user's pipe
// allowance (fs.pipe-user-pages-soft: past it, the user's new pipes get a
// single page).
const BulkPipeBytes = 1 << 20

// BulkPipe grows the pipe r to BulkPipeBytes if it can and returns the
// larger read buffer. A failure to grow (EPERM past the user's allowance)
// leaves the pipe as it was; the larger buffer still halves the reads.
func BulkPipe(r *os.File) []byte {
	if rc, err := r.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, BulkPipeBytes)
		})
	}
	return make([]byte, BulkPipeBytes)
}
