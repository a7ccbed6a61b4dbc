package client

import (
	"io"
	"os"
	"sync"

	"github.com/tether-sh/tether/internal/pipesize"
	"github.com/tether-sh/tether/internal/wire"
)

// stdinWindow matches the session host's stdin buffer: the client never has
// more than this in flight, and keeps it all for a resend after a reconnect.
const stdinWindow = 1 << 20

// stdinReadBytes is the least room read wants at the end of its buffer
// before reading the local stdin into it; it reads up to twice that. A
// new array is made when there is less (not append, which for a buffer
// that is cut at the front and grown at the back made a new one, and
// copied up to stdinWindow, every quarter of it: most of the client's CPU
// for bulk stdin in #18's profile).
const stdinReadBytes = 64 << 10

// stdinSender forwards the local stdin to the command. It keeps every byte
// the host has not yet consumed, so a reconnect resends exactly the missing
// part from the offset the host reports.
type stdinSender struct {
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte // bytes from offset base on, in arr
	arr     []byte // buf's array; bytes move in it only while sending == 0
	sending int    // pump is writing from buf outside the lock
	base    uint64 // bytes consumed by the command (acknowledged)
	sent    uint64 // next offset to send on the current channel
	eof     bool
	eofSent bool
	err     error
	gen     int // bumped on resume to restart a pump
}

func newStdinSender(r io.Reader) *stdinSender {
	s := &stdinSender{}
	s.cond = sync.NewCond(&s.mu)
	go s.read(r)
	return s
}

func (s *stdinSender) read(r io.Reader) {
	// Once a read finds half a pipe's 64 KiB waiting (the writer is ahead),
	// the pipe is grown and read up to a MiB at a time (see pipesize).
	most := 2 * stdinReadBytes
	for {
		s.mu.Lock()
		for len(s.buf) >= stdinWindow {
			s.cond.Wait()
		}
		if cap(s.buf)-len(s.buf) < stdinReadBytes {
			// Move what is kept to the front of the array, once pump
			// no longer sends from it outside the lock (about once per
			// stdinWindow of input; usually little is kept).
			for s.sending > 0 {
				s.cond.Wait()
			}
			if s.arr == nil {
				s.arr = make([]byte, stdinWindow+2*stdinReadBytes)
			}
			n := copy(s.arr, s.buf)
			s.buf = s.arr[:n]
		}
		// Read straight into the free end of buf: ack only cuts buf's
		// front, so its end, where this read lands, stays put.
		free := s.buf[len(s.buf):cap(s.buf)]
		free = free[:min(len(free), most)]
		s.mu.Unlock()
		n, err := r.Read(free)
		if f, ok := r.(*os.File); ok && n >= stdinReadBytes/2 && most < pipesize.Bulk {
			_ = pipesize.Grow(f) // not a pipe, or the user's allowance spent: as before
			most = pipesize.Bulk
		}
		s.mu.Lock()
		s.buf = s.buf[:len(s.buf)+n]
		if err != nil {
			s.eof = true
			if err != io.EOF {
				s.err = err
			}
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// ack drops what the host has consumed.
func (s *stdinSender) ack(off uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off <= s.base {
		return
	}
	drop := off - s.base
	if drop > uint64(len(s.buf)) {
		drop = uint64(len(s.buf))
	}
	s.buf = s.buf[drop:] // never nil: read is filling the array's end
	s.base += drop
	if s.sent < s.base {
		s.sent = s.base
	}
	s.cond.Broadcast()
}

// resume restarts sending at the offset the host already has.
func (s *stdinSender) resume(received uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if received < s.base {
		received = s.base
	}
	s.sent = received
	s.eofSent = false
	s.gen++
	s.cond.Broadcast()
}

// pump sends stdin frames on wc until stop is closed or a write fails.
func (s *stdinSender) pump(wc *wire.Conn, stop <-chan struct{}) error {
	go func() {
		<-stop
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	s.mu.Lock()
	gen := s.gen
	for {
		for {
			select {
			case <-stop:
				s.mu.Unlock()
				return nil
			default:
			}
			if gen != s.gen {
				s.mu.Unlock()
				return nil
			}
			end := s.base + uint64(len(s.buf))
			if s.sent < end || (s.eof && !s.eofSent) {
				break
			}
			s.cond.Wait()
		}
		end := s.base + uint64(len(s.buf))
		if s.sent < end {
			from := s.sent - s.base
			to := min(uint64(len(s.buf)), from+wire.MaxChunk)
			data := s.buf[from:to]
			off := s.sent
			s.sending++ // read moves no bytes meanwhile
			s.mu.Unlock()
			err := wc.WriteU64(wire.TStdin, off, data)
			s.mu.Lock()
			if s.sending--; s.sending == 0 {
				s.cond.Broadcast() // read may wait to move buf
			}
			if err != nil {
				s.mu.Unlock()
				return err
			}
			if s.sent == off {
				s.sent = off + uint64(len(data))
			}
			continue
		}
		off := s.sent
		s.eofSent = true
		s.mu.Unlock()
		if err := wc.WriteU64(wire.TStdinEOF, off, nil); err != nil {
			return err
		}
		s.mu.Lock()
	}
}
