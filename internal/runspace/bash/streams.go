package bash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/runspace"
)

// cmdStreams are the paths bash opens for one command and the copiers
// behind the pipes among them.
type cmdStreams struct {
	in, out, err string
	stdin        *inCopier
	outs         []*outCopier
}

// openStreams prepares one command's streams. A nil stream is /dev/null;
// an *os.File naming a terminal (enter's PTY) is opened by bash itself, by
// path; anything else is a pipe bash opens by its /proc/PID/fd path, fresh
// per command so that a background job's late output never mixes into a
// later one. (Not FIFOs: on ext4 a mkfifo and its unlink cost far more
// than a pipe, and a pipe needs no name in the state directory.)
func (s *Shell) openStreams(seq int, st runspace.Streams) (*cmdStreams, error) {
	cs := &cmdStreams{in: "/dev/null", out: "/dev/null", err: "/dev/null"}
	fail := func(err error) (*cmdStreams, error) {
		cs.finish(nil)
		return nil, err
	}
	if st.Stdin != nil {
		if p, ok := ttyPath(st.Stdin); ok {
			cs.in = p
		} else {
			c, err := newInCopier(st.Stdin)
			if err != nil {
				return fail(err)
			}
			cs.in, cs.stdin = c.path, c
		}
	}
	for i, w := range []io.Writer{st.Stdout, st.Stderr} {
		if w == nil {
			continue
		}
		dst := &cs.out
		if i == 1 {
			dst = &cs.err
		}
		if p, ok := ttyPath(w); ok {
			*dst = p
			continue
		}
		c, err := newOutCopier(w, i+1)
		if err != nil {
			return fail(err)
		}
		*dst = c.path
		cs.outs = append(cs.outs, c)
	}
	return cs, nil
}

// ttyPath: an *os.File whose name is a terminal device path.
func ttyPath(x any) (string, bool) {
	f, ok := x.(*os.File)
	if !ok {
		return "", false
	}
	n := f.Name()
	if strings.HasPrefix(n, "/dev/pts/") || strings.HasPrefix(n, "/dev/tty") {
		return n, true
	}
	return "", false
}

// finish is called once bash reported the command's status: stdin gets
// EOF, output already written is copied out, and what background jobs
// write later goes to late.
func (cs *cmdStreams) finish(late func(int, []byte)) {
	if cs.stdin != nil {
		cs.stdin.close()
	}
	// Both streams are told first, then both awaited.
	for _, c := range cs.outs {
		c.end(late)
	}
	for _, c := range cs.outs {
		<-c.drained
	}
}

// inCopier feeds a reader into a pipe that bash opens as the command's
// stdin by its /proc/PID/fd path: an anonymous pipe, not a FIFO, because
// programs reopen /dev/stdin (`. /dev/stdin`, `cat /dev/stdin`, `-f
// /dev/stdin`), and reopening a FIFO whose writer is gone waits forever.
// The session host keeps its read end until bash has opened the pipe.
type inCopier struct {
	path string
	r, w *os.File
	open chan struct{} // closed when bash opened its end
	once sync.Once
}

func (c *inCopier) opened() {
	c.once.Do(func() {
		close(c.open)
		c.r.Close()
	})
}

func newInCopier(src io.Reader) (*inCopier, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("bash: stdin pipe: %w", err)
	}
	c := &inCopier{path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), r.Fd()), r: r, w: w, open: make(chan struct{})}
	go func() {
		_ = runspace.CopyToPipe(w, src)
		// EOF for the command when the client's input ends.
		w.Close()
	}()
	return c, nil
}

func (c *inCopier) close() {
	c.opened()
	c.w.Close()
}

// outCopier copies a pipe bash opens by path (opening a pipe's /proc path
// for writing is a FIFO open: it needs a reader, which r is) and writes a
// command's output to. Its own writer end keeps the reader from seeing EOF
// before bash opened the pipe; it is closed when the command ended, so that
// EOF then means no background job holds the pipe either.
type outCopier struct {
	path   string
	r      *os.File
	hold   int // the write end: a plain fd, never read or written here
	w      io.Writer
	stream int

	mu      sync.Mutex
	late    func(int, []byte)
	drained chan struct{} // closed when output written before the end is out
	once    sync.Once
}

func newOutCopier(w io.Writer, stream int) (*outCopier, error) {
	// Only the read end goes to Go's poller.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("bash: output pipe: %w", err)
	}
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, fmt.Errorf("bash: output pipe: %w", err)
	}
	r, hold := os.NewFile(uintptr(p[0]), "|"+strconv.Itoa(stream)), p[1]
	path := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(hold)
	c := &outCopier{path: path, r: r, hold: hold, w: w, stream: stream, drained: make(chan struct{})}
	go c.copy()
	return c, nil
}

func (c *outCopier) emit(p []byte, late bool) {
	if !late {
		_, _ = c.w.Write(p)
		return
	}
	c.mu.Lock()
	f := c.late
	c.mu.Unlock()
	if f != nil {
		f(c.stream, append([]byte(nil), p...))
	}
}

func (c *outCopier) copy() {
	defer c.r.Close()
	defer c.once.Do(func() { close(c.drained) })
	buf := make([]byte, 32<<10)
	late := false
	var direct runspace.PipeWriter // bulk output read into c.w's memory
	for {
		var n int
		var err error
		if direct != nil && !late {
			var werr error
			if err, werr = runspace.CopyPipeInto(c.r, direct); werr != nil {
				direct = nil // c.w failed: go on draining into it, as emit does
				buf = runspace.BulkPipe(c.r)
				continue
			}
			if err == nil {
				return // the end
			}
		} else {
			n, err = c.r.Read(buf)
			if n > 0 {
				c.emit(buf[:n], late)
			}
		}
		if err == nil {
			if n == len(buf) && n < runspace.BulkPipeBytes {
				if pw, ok := runspace.AsPipeWriter(c.r, c.w); ok {
					direct = pw
				} else {
					buf = runspace.BulkPipe(c.r) // bulk output: see BulkPipe
				}
			}
			continue
		}
		if !late && errors.Is(err, os.ErrDeadlineExceeded) {
			// The command ended: copy what is buffered without waiting,
			// then hand the rest to the late hook.
			_ = c.r.SetReadDeadline(time.Time{})
			eof := c.drainNow(buf)
			late = true
			c.once.Do(func() { close(c.drained) })
			if eof {
				return
			}
			continue
		}
		return
	}
}

// drainNow reads until the pipe is empty; eof when no writer is left.
func (c *outCopier) drainNow(buf []byte) (eof bool) {
	rc, err := c.r.SyscallConn()
	if err != nil {
		return true
	}
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true
		}); err != nil {
			return true
		}
		switch {
		case rerr == unix.EINTR:
			continue
		case rerr == unix.EAGAIN:
			return false
		case rerr != nil || n == 0:
			return true
		}
		c.emit(buf[:n], false)
	}
}

// end: the command ended; what the copier reads once the pipe is empty
// goes to late. c.drained is closed when what came before is out.
func (c *outCopier) end(late func(int, []byte)) {
	c.mu.Lock()
	c.late = late
	c.mu.Unlock()
	unix.Close(c.hold)
	_ = c.r.SetReadDeadline(time.Now())
}
