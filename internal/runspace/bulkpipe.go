package runspace

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/pipesize"
)

// A command's output pipe starts at the kernel's 64 KiB and is read in
// 32 KiB pieces: cheap for the many commands that print a line. A command
// that streams output fills such a read every time, and each read is a
// syscall and a wake-up of the session host (32,768 of them per GiB, #18).
// Once a read comes back full, BulkPipe grows the pipe (see pipesize) and
// returns a read buffer as large.
const BulkPipeBytes = pipesize.Bulk

// BulkPipe grows the pipe r to BulkPipeBytes if it can and returns the
// larger read buffer. A failure to grow (EPERM past the user's allowance)
// leaves the pipe as it was; the larger buffer still halves the reads.
func BulkPipe(r *os.File) []byte {
	_ = pipesize.Grow(r)
	return make([]byte, BulkPipeBytes)
}

// CopyToPipe copies src into the pipe w, as io.Copy does, growing w (see
// BulkPipe) once a read of src fills the 32 KiB buffer: bulk stdin for a
// command then goes in pieces of up to a MiB instead of 32 KiB, each a
// write the command's reads wake up for.
func CopyToPipe(w *os.File, src io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n == len(buf) && n < BulkPipeBytes {
			buf = BulkPipe(w)
		}
	}
}

// A PipeWriter takes a command's output into memory of its own: the
// session host's journal writer lends the journal's tail, so that a pipe's
// bytes are read where they are kept instead of into a buffer and copied
// from there (#18). WriteFrom calls read at most once, with a buffer of its
// choosing, and writes the bytes read puts at its start (read returns how
// many; 0 writes nothing). read does not block. WriteFrom is safe to call
// alongside Write and itself (a command's two streams, builtins' writes).
type PipeWriter interface {
	io.Writer
	WriteFrom(read func(p []byte) int) (int, error)
}

// AsPipeWriter returns w as a PipeWriter, growing the pipe r for bulk
// output (see BulkPipe), if w is one.
func AsPipeWriter(r *os.File, w io.Writer) (PipeWriter, bool) {
	pw, ok := w.(PipeWriter)
	if ok {
		_ = pipesize.Grow(r)
	}
	return pw, ok
}

// CopyPipeInto copies the pipe r into w's memory until r's end (nil, nil),
// a failed read or wait of r (readErr: a deadline, say) or a failed write
// (writeErr; r is not drained then). r must be nonblocking, as os.Pipe's
// ends are: each read takes what the pipe holds and the poller waits for
// more. r's deadline is checked before every read, as File.Read does: a
// deadline tells the bash runspace's copier that its command ended, also
// while a background job keeps the pipe full.
func CopyPipeInto(r *os.File, w PipeWriter) (readErr, writeErr error) {
	rc, err := r.SyscallConn()
	if err != nil {
		return err, nil
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = 0, nil
			called := false
			_, writeErr = w.WriteFrom(func(p []byte) int {
				called = true
				for {
					n, rerr = unix.Read(int(fd), p)
					if rerr != unix.EINTR {
						break
					}
				}
				return max(n, 0)
			})
			if writeErr == nil && !called {
				writeErr = errors.New("runspace: the output's writer did not read the pipe")
			}
			// EAGAIN: the poller waits for more, then calls again.
			return writeErr != nil || rerr != unix.EAGAIN
		})
		switch {
		case writeErr != nil:
			return nil, writeErr
		case err != nil:
			return err, nil
		case rerr != nil:
			return os.NewSyscallError("read", rerr), nil
		case n == 0:
			return nil, nil // the end
		}
	}
}
