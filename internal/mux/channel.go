package mux

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"
)

// Channel is an SSH channel lent by a master: it implements ssh.Channel.
// Channel requests and extended data are not carried (Tether's protocol uses
// neither).
type Channel struct {
	f *frameConn

	rmu    sync.Mutex
	left   int   // bytes of the current data frame not read yet
	rerr   error // sticky read error (io.EOF after the far end's EOF)
	closed sync.Once
}

// Open asks the master at path for a channel of type typ, waiting at most
// timeout for the answer. An error wrapping ErrNoMaster means no usable
// master (dial directly); *OpenError is the agent's refusal.
func Open(path, typ string, timeout time.Duration) (*Channel, error) {
	p, err := Start(path, typ, timeout)
	if err != nil {
		return nil, err
	}
	return p.Finish(nil)
}

// Pending is a channel asked of a master whose answer is not read yet:
// the caller sends the channel's first bytes with the request and reads
// the answer with them, one round trip to the master instead of two (a
// fresh `tether invoke` asks for one channel and sends one request).
type Pending struct {
	f       *frameConn
	timeout time.Duration
}

// Start connects to the master at path and asks for a channel of type typ
// without waiting for the answer. An error wrapping ErrNoMaster: no master
// listens there.
func Start(path, typ string, timeout time.Duration) (*Pending, error) {
	f, err := connect(path)
	if err != nil {
		return nil, err
	}
	if err := f.write(fOpen, []byte(typ)); err != nil {
		f.c.Close()
		return nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
	}
	return &Pending{f: f, timeout: timeout}, nil
}

// Finish sends first on the channel (before the answer: the master keeps
// it unread until it has the channel and has said OK) and reads the
// answer, waiting at most the timeout. An error wrapping ErrNoMaster means
// the master closed without a byte of answer — it forwards nothing before
// its OK, so none of first reached the agent and the caller may dial
// directly. ErrNoAnswer (a timeout, a partial or unexpected answer) means
// first may have reached the agent: the caller must not send it again.
// *OpenError is the agent's refusal, after which first is dropped too.
func (p *Pending) Finish(first []byte) (*Channel, error) {
	f := p.f
	f.c.SetDeadline(time.Now().Add(p.timeout))
	var werr error
	if len(first) > 0 {
		_, werr = f.writeData(first)
	}
	// Whether any answer came decides whether first may go elsewhere.
	if _, err := f.r.Peek(1); err != nil {
		f.c.Close()
		if len(first) == 0 || closedUnanswered(err) {
			return nil, fmt.Errorf("%w: %v", ErrNoMaster, err)
		}
		return nil, fmt.Errorf("%w within %s: %v", ErrNoAnswer, p.timeout, err)
	}
	unsafe := ErrNoMaster // nothing of first went out: the caller may dial directly
	if len(first) > 0 {
		unsafe = ErrNoAnswer
	}
	typ, payload, err := f.readFrame()
	if err != nil {
		f.c.Close()
		return nil, fmt.Errorf("%w: a partial answer: %v", unsafe, err)
	}
	f.c.SetDeadline(time.Time{})
	switch {
	case typ == fFail:
		f.c.Close()
		return nil, decodeFail(payload)
	case typ != fOK:
		f.c.Close()
		return nil, fmt.Errorf("%w: unexpected answer %q", unsafe, typ)
	case werr != nil: // an OK, but first did not go out whole: not a usable channel
		f.c.Close()
		return nil, fmt.Errorf("mux: send on the new channel: %w", werr)
	}
	return &Channel{f: f}, nil
}

// closedUnanswered reports whether a read that got no byte at all failed
// because the master closed its end (it exited, or gave up on the
// request), not because the wait ran out: a master writes its answer
// before it forwards anything, and the kernel delivers what was written
// before the close, so nothing was forwarded.
func closedUnanswered(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Close gives up a pending channel without reading its answer: the master
// sees the connection close and closes the channel.
func (p *Pending) Close() { p.f.c.Close() }

// Read reads the channel's data.
func (c *Channel) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for c.left == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		typ, n, err := c.f.readHeader()
		if err != nil {
			c.rerr = io.EOF // the master went away: as a lost connection
			return 0, c.rerr
		}
		switch typ {
		case fData:
			c.left = n
		case fEOF, fClose:
			c.rerr = io.EOF
			if n > 0 {
				c.f.r.Discard(n)
			}
		default:
			c.rerr = fmt.Errorf("mux: unexpected frame %q", typ)
			return 0, c.rerr
		}
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.f.r.Read(p)
	c.left -= n
	if err != nil {
		c.rerr = io.EOF
		if n == 0 {
			return 0, c.rerr
		}
	}
	return n, nil
}

// Write sends data on the channel.
func (c *Channel) Write(p []byte) (int, error) {
	n, err := c.f.writeData(p)
	if err != nil {
		return n, io.EOF
	}
	return n, nil
}

// CloseWrite signals the end of this side's data (SSH EOF).
func (c *Channel) CloseWrite() error { return c.f.write(fEOF, nil) }

// Close closes the channel.
func (c *Channel) Close() error {
	err := io.EOF
	c.closed.Do(func() {
		c.f.c.SetWriteDeadline(time.Now().Add(time.Second))
		c.f.write(fClose, nil)
		err = c.f.c.Close()
	})
	return err
}

// SendRequest is not supported on a lent channel.
func (c *Channel) SendRequest(name string, wantReply bool, payload []byte) (bool, error) {
	return false, errors.New("mux: channel requests are not supported")
}

// Stderr is not carried: reads end at once, writes fail.
func (c *Channel) Stderr() io.ReadWriter { return noStderr{} }

type noStderr struct{}

func (noStderr) Read([]byte) (int, error)  { return 0, io.EOF }
func (noStderr) Write([]byte) (int, error) { return 0, errors.New("mux: no extended data") }
