package runspace

import (
	"io"
	"os"

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
