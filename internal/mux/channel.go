package mux

import (
	"errors"
	"fmt"
	"io"
	"sync"
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
	f, _, err := request(path, fOpen, []byte(typ), timeout)
	if err != nil {
		return nil, err
	}
	return &Channel{f: f}, nil
}

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
