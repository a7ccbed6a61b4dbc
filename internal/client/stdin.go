package client

import (
	"io"
	"sync"

	"github.com/tether-sh/tether/internal/wire"
)

// stdinWindow matches the session host's stdin buffer: the client never has
// more than this in flight, and keeps it all for a resend after a reconnect.
const stdinWindow = 1 << 20

// stdinSender forwards the local stdin to the command. It keeps every byte
// the host has not yet consumed, so a reconnect resends exactly the missing
// part from the offset the host reports.
type stdinSender struct {
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte // bytes from offset base on
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
	chunk := make([]byte, 64<<10)
	for {
		s.mu.Lock()
		for len(s.buf) >= stdinWindow {
			s.cond.Wait()
		}
		s.mu.Unlock()
		n, err := r.Read(chunk)
		s.mu.Lock()
		s.buf = append(s.buf, chunk[:n]...)
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
	s.buf = s.buf[drop:]
	if len(s.buf) == 0 {
		s.buf = nil
	}
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
			s.mu.Unlock()
			err := wc.WriteU64(wire.TStdin, off, data) // data is not mutated: buf only shrinks from the front or grows by append
			s.mu.Lock()
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
