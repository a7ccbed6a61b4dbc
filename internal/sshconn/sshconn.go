// Package sshconn is the net.Conn that x/crypto/ssh writes its packets to:
// it sends each bulk packet in one system call instead of two.
//
// x/crypto/ssh writes a packet through a 4 KiB bufio.Writer: the packet's
// 4-byte length goes into the buffer, then its body, so a packet longer than
// the buffer reaches the connection as a write of exactly 4096 bytes (the
// buffer, filled and flushed) and then a write of the rest. On loopback TCP
// each write is a segment sent and received in full (the sender's system
// call runs the receiver's TCP input too) and wakes the reader once more:
// for a 1 GiB stream of 32 KiB packets, 32,768 writes, segments and wake-ups
// more than the bytes need (#17, #18).
//
// Conn holds a write of exactly that size and sends it with the next write
// as one writev. With AES-GCM (x/crypto/ssh's first choice) the packet's
// length is in the clear in its first 4 bytes: a packet of exactly 4096
// bytes is told from a first part and sent at once, and once the rest of a
// few held packets came as long as their lengths said (trustAfter), the
// connection's packets are known to carry their length in the clear: a
// held first part's rest follows in the same call. A timer sends what has
// been held for a whole period (between one and two periods), so no byte
// waits longer: HoldMax under another cipher or before the trust, and
// trustedHoldMax after it, when it is only a bound. It is armed only while
// writes are held, at most once per period: a timer per packet cost the
// agent a quarter more context switches. Bytes go out in the order written
// either way.
package sshconn

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// heldSize is x/crypto/ssh's write buffer (bufio.NewWriter's default size).
const heldSize = 4096

// HoldMax is the period of the timer that sends a held write no other write
// followed. The rest of a packet follows within microseconds (the same
// goroutine's next call), so only a whole packet of exactly heldSize bytes
// under a cipher other than AES-GCM ever waits for it.
const HoldMax = 500 * time.Microsecond

// gcmTag is AES-GCM's tag, after the packet on the wire.
const gcmTag = 16

// trustedHoldMax is the timer's period once the lengths are trusted: there
// a held part's rest always follows at once, and the timer only bounds the
// wait should the peer renegotiate a cipher that hides lengths (it then ends
// the trust at the next write), at a few wake-ups a second while bulk flows.
const trustedHoldMax = 50 * time.Millisecond

// trustAfter is how many held first parts whose rest came as long as their
// clear length said make the connection's lengths trusted. A cipher that
// encrypts the length (random-looking here) matches by chance with odds of
// 2^-32 each time, and one mismatch ends the trust for good.
const trustAfter = 8

// Conn is a net.Conn whose Write merges x/crypto/ssh's two writes of a
// packet and whose Read reads ahead (read.go); everything else is the
// wrapped connection's.
type Conn struct {
	net.Conn

	mu    sync.Mutex
	held  [heldSize]byte
	nheld int   // 0 or heldSize
	err   error // a failed write of held bytes, returned by the next Write
	timer *time.Timer
	armed bool   // timer pending
	gen   uint64 // holds so far; the timer flushes a hold it saw before
	seen  uint64 // gen at the timer's last run
	// rest is the length the held part's clear length says is to follow
	// (-1: none); matched counts the holds where it did, mismatch is set
	// by one where it did not.
	rest     int
	matched  int
	mismatch bool
	arms     int // times the timer was armed (for tests)
	// writev: the connection takes net.Buffers in one system call (TCP
	// and unix sockets); else a merge is copied into join first.
	writev bool
	join   []byte
	// Holds and merges count what Conn did, for tests.
	holds, merges, timed int

	r reader // read.go
}

// New wraps c.
func New(c net.Conn) *Conn {
	w := &Conn{Conn: c, rest: -1}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		w.writev = true
	}
	w.timer = time.AfterFunc(time.Hour, w.flushHeld)
	w.timer.Stop()
	w.initRead()
	return w
}

// Write sends p, or holds it (a write of exactly heldSize with nothing
// held) until the next Write or HoldMax.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.nheld == 0 {
		if len(p) != heldSize {
			return c.Conn.Write(p)
		}
		total := 4 + int(binary.BigEndian.Uint32(p)) + gcmTag
		if total == heldSize {
			return c.Conn.Write(p) // a whole AES-GCM packet
		}
		copy(c.held[:], p)
		c.nheld = heldSize
		c.holds++
		c.gen++
		c.rest = total - heldSize
		if !c.armed {
			c.armed = true
			c.arms++
			c.seen = c.gen - 1
			c.timer.Reset(c.periodLocked())
		}
		return len(p), nil
	}
	held := c.nheld
	c.nheld = 0
	c.merges++
	if len(p) == c.rest {
		c.matched++
	} else {
		c.mismatch = true
	}
	var k int64
	var err error
	if c.writev {
		bufs := net.Buffers{c.held[:held], p}
		k, err = bufs.WriteTo(c.Conn)
	} else {
		// net.Buffers would write each part on its own here.
		c.join = append(append(c.join[:0], c.held[:held]...), p...)
		var n int
		n, err = c.Conn.Write(c.join)
		k = int64(n)
	}
	if err != nil && k < int64(held) {
		// The held bytes (already reported written) did not all go:
		// the stream is broken from here on.
		c.err = err
	}
	return max(0, int(k)-held), err
}

// trustedLocked reports whether the connection's packets are known to
// carry their length in the clear (a false "whole packet" above, under a
// cipher that does not, only sends a first part alone).
func (c *Conn) trustedLocked() bool { return c.matched >= trustAfter && !c.mismatch }

// flushHeld, the timer, sends a hold that has lasted since its last run,
// and runs again while writes are being held.
func (c *Conn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	if c.nheld == 0 {
		return
	}
	if c.gen == c.seen {
		c.timed++
		c.flushLocked()
		return
	}
	c.seen = c.gen
	c.armed = true
	c.timer.Reset(c.periodLocked())
}

// periodLocked is the timer's period: HoldMax, or trustedHoldMax once the
// lengths are trusted.
func (c *Conn) periodLocked() time.Duration {
	if c.trustedLocked() {
		return trustedHoldMax
	}
	return HoldMax
}

func (c *Conn) flushLocked() {
	if c.nheld == 0 || c.err != nil {
		return
	}
	n := c.nheld
	c.nheld = 0
	c.rest = -1
	if _, err := c.Conn.Write(c.held[:n]); err != nil {
		c.err = err
	}
}

// closeFlushMax bounds Close's wait for a peer that reads nothing: a
// connection given up on must not hang its closer on held bytes.
const closeFlushMax = 100 * time.Millisecond

// Close sends what is held, then closes the connection.
func (c *Conn) Close() error {
	c.timer.Stop()
	c.Conn.SetWriteDeadline(time.Now().Add(closeFlushMax))
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// Counts reports how many writes were held, merged with the next, and sent
// by the timer, and how often the timer was armed.
func (c *Conn) Counts() (holds, merges, timed, arms int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holds, c.merges, c.timed, c.arms
}
