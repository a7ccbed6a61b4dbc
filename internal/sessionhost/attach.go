package sessionhost

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/wire"
)

// attachment is the one client connection that currently holds the session
// and receives its output.
type attachment struct {
	conn   *wire.Conn
	client wire.Client
	since  time.Time

	once   sync.Once
	kicked chan struct{}
	reason string
}

func newAttachment(c *wire.Conn, client wire.Client, now time.Time) *attachment {
	return &attachment{conn: c, client: client, since: now, kicked: make(chan struct{})}
}

// kick tells the client why it lost the session and ends the attachment.
func (a *attachment) kick(reason string) {
	a.once.Do(func() {
		a.reason = reason
		close(a.kicked)
	})
}

// streamSpec says what an attachment delivers.
type streamSpec struct {
	after uint64   // deliver records after this seq
	cmd   *command // follow until this command's exit record is acknowledged; nil: until caught up
	until uint64   // with cmd nil: stop after this seq
	reuse bool     // the client ends with TEnd and may send another request
	// endMark: the agent keeps the connection (wire.Request.EndMark):
	// once the exit record is acknowledged, say TEnd and wait for the
	// agent's TEnd, as for reuse.
	endMark bool
	// retained: deliver acknowledged records still in the journal too
	// (receive --all).
	retained bool
	// response, when set, is the request's response, not yet written: it
	// goes out with the records ready at the stream's start, in one write.
	response wire.Frame
}

// writerGrace bounds how long a stream whose client stopped talking waits
// for its writer; a client that stops reading without closing could
// otherwise hold the writer forever.
const writerGrace = 2 * time.Second

// responseWait bounds how long a run's response waits for the command's
// first records to go out with them. A builtin `true` ends within a few
// microseconds of its start and bash's within a few hundred; a longer
// command's response (which the client only reads before its records) is
// that much later.
var responseWait = time.Millisecond // a var for TestQuickRunResponseAndExitInOneWrite

// errEnd is how the reader reports the client's TEnd: the client has all it
// asked for and keeps the connection for another request.
var errEnd = errors.New("client ended the stream")

// stream delivers journal records to the attached client and reads its acks,
// stdin and signals, until the spec is satisfied, the client goes away, or
// another client takes over. It reports whether delivery completed, and
// whether the connection may serve another request (spec.reuse: the client
// said TEnd after its last ack, so nothing of this stream is left unread).
func (h *Host) stream(a *attachment, spec streamSpec) (completed, reusable bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// What precedes the stream counts as delivered; the records sent with
	// the response do not (until acknowledged): counted, a command whose
	// exit record went out with the response ended the stream before the
	// client's final ack was read.
	delivered := spec.after

	// The response first, with the command's first records when they come
	// within responseWait (a short command's output and exit record): one
	// write, one read and one packet for every process on the way instead
	// of two. Before the stdin ack, the reader and any event.
	var sent sentRecords
	if spec.response != nil {
		if h.j.Last() <= spec.after {
			wctx, wcancel := context.WithTimeout(ctx, responseWait)
			h.j.Wait(wctx, spec.after)
			wcancel()
		}
		var err error
		if sent, err = h.sendRecords(a, spec, spec.after, spec.response); err != nil {
			return false, false
		}
		spec.after = sent.after
	}

	var stdin *stdinPipe
	if spec.cmd != nil {
		stdin = spec.cmd.stdin
	}
	if stdin != nil {
		tok, consumed := stdin.setNotify(func(consumed uint64) {
			a.conn.WriteU64(wire.TStdinAck, consumed, nil)
		})
		defer stdin.clearNotify(tok)
		a.conn.WriteU64(wire.TStdinAck, consumed, nil)
	}

	// Reader: acks, stdin, signals from the client.
	acked := make(chan uint64, 1)
	readErr := make(chan error, 1)
	go func() {
		readErr <- h.readClient(a, stdin, acked)
	}()

	// Writer: journal records, in order.
	writeErr := make(chan error, 1)
	target := make(chan uint64, 1) // the seq whose ack completes the stream
	if sent.end {
		target <- sent.after
		writeErr = nil
	} else {
		go func() {
			writeErr <- h.writeRecords(ctx, a, spec, target)
		}()
	}

	var want uint64
	haveWant := false
	lastAck := delivered
	for {
		select {
		case seq := <-target:
			want, haveWant = seq, true
			if lastAck >= want {
				return h.endStream(a, spec, readErr)
			}
		case seq := <-acked:
			lastAck = seq
			if haveWant && lastAck >= want {
				return h.endStream(a, spec, readErr)
			}
		case err := <-writeErr:
			if err != nil {
				return false, false
			}
			writeErr = nil
		case err := <-readErr:
			// The client may have acked the end and closed at once: the
			// ack and the close arrive together, possibly before the
			// writer has reported the seq that ends the stream. Let the
			// writer finish (its writes fail on a closed transport, its
			// wait ends with ctx) before judging.
			cancel()
			if writeErr != nil {
				select {
				case <-writeErr:
				case <-time.After(writerGrace):
				}
			}
			select {
			case seq := <-target:
				want, haveWant = seq, true
			default:
			}
			select {
			case seq := <-acked:
				lastAck = seq
			default:
			}
			completed := haveWant && lastAck >= want
			return completed, completed && spec.reuse && err == errEnd
		case <-a.kicked:
			a.conn.WriteJSON(wire.TEvent, wire.Event{Kind: "detached", Reason: a.reason})
			return false, false
		case <-h.closed:
			return false, false
		}
	}
}

// endStream finishes a completed stream. A client that asked for reuse
// sends TEnd right after its last ack; wait for it, so that the next frame
// read from the connection is its next request. Anything else means the
// connection is done. With endMark the host speaks first: its TEnd tells
// the agent that nothing more of this stream follows, and the agent's TEnd
// that it forwards nothing more of the client's.
func (h *Host) endStream(a *attachment, spec streamSpec, readErr <-chan error) (completed, reusable bool) {
	if spec.endMark {
		if a.conn.Write(wire.TEnd) != nil {
			return true, false
		}
	} else if !spec.reuse {
		return true, false
	}
	select {
	case err := <-readErr:
		return true, err == errEnd
	case <-a.kicked:
		return true, false
	case <-h.closed:
		return true, false
	}
}

// writeRecords sends records after spec.after. When it has sent the record
// that ends the stream it reports that seq on target and returns. The
// records of one journal read go out in one write.
func (h *Host) writeRecords(ctx context.Context, a *attachment, spec streamSpec, target chan<- uint64) error {
	after := spec.after
	for {
		sent, err := h.sendRecords(a, spec, after, nil)
		if err != nil {
			return err
		}
		after = sent.after
		if sent.end {
			target <- after
			return nil
		}
		if sent.n > 0 {
			continue
		}
		if err := h.j.Wait(ctx, after); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
	}
}

// sentRecords is what one sendRecords wrote.
type sentRecords struct {
	after uint64 // the last seq sent (the one before them when none was)
	n     int    // records sent
	end   bool   // the stream's last record was among them
}

// sendRecords writes, after first (nil: nothing), the records after seq
// after that the journal holds now, up to the stream's end, in one write.
func (h *Host) sendRecords(a *attachment, spec streamSpec, after uint64, first wire.Frame) (sentRecords, error) {
	const writeBatch = 1 << 20 // bytes of records read and sent at once
	sent := sentRecords{after: after}
	// Borrowed: the journal reuses the records' memory once they are
	// written and given back.
	recs, done, err := h.j.Borrow(after, writeBatch, spec.retained)
	if err != nil {
		if done != nil {
			done()
		}
		return sent, err
	}
	outs := make([]wire.Output, 0, len(recs))
	for _, r := range recs {
		outs = append(outs, wire.Output{Seq: r.Seq, Kind: r.Kind, Cmd: r.Cmd, Data: r.Data})
		sent.after, sent.n = r.Seq, sent.n+1
		if spec.cmd != nil && r.Kind == journal.KindExit && r.Cmd == spec.cmd.id ||
			spec.cmd == nil && r.Seq >= spec.until {
			sent.end = true
			break
		}
	}
	err = a.conn.WriteOutputsAfter(first, outs)
	clear(outs) // do not pin journal memory
	if done != nil {
		done()
	}
	if err == nil && !sent.end && sent.n == 0 && spec.cmd == nil && sent.after >= spec.until {
		sent.end = true // caught up: nothing after until is asked for
	}
	return sent, err
}

// readClient handles frames from the attached client until it fails.
func (h *Host) readClient(a *attachment, stdin *stdinPipe, acked chan uint64) error {
	var highest uint64
	for {
		t, p, err := a.conn.Read()
		if err != nil {
			return err
		}
		switch t {
		case wire.TEnd:
			return errEnd
		case wire.TAck:
			seq, _, err := wire.DecodeU64(t, p)
			if err != nil {
				return err
			}
			h.j.Ack(seq)
			h.touch()
			// Acks may arrive out of order (the client's periodic acker
			// races its final one); only the highest counts.
			if seq <= highest {
				continue
			}
			highest = seq
			select {
			case acked <- seq:
			default:
				select {
				case <-acked:
				default:
				}
				acked <- seq
			}
		case wire.TStdin:
			off, data, err := wire.DecodeU64(t, p)
			if err != nil {
				return err
			}
			if stdin == nil {
				continue
			}
			if err := stdin.write(off, data); err != nil {
				return err
			}
		case wire.TStdinEOF:
			off, _, err := wire.DecodeU64(t, p)
			if err != nil {
				return err
			}
			if stdin != nil {
				stdin.setEOF(off)
			}
		case wire.TSignal:
			var s wire.Signal
			if err := wire.DecodeJSON(t, p, &s); err != nil {
				return err
			}
			h.signal(s.Name)
		case wire.TResize:
			rows, cols, err := wire.DecodeResize(p)
			if err != nil {
				return err
			}
			h.resize(rows, cols)
		default:
			// Unknown frames from a newer client are ignored.
		}
	}
}

func (h *Host) touch() {
	h.mu.Lock()
	h.idleSince = h.now()
	h.mu.Unlock()
	h.poke()
}

var signals = map[string]syscall.Signal{
	"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "QUIT": syscall.SIGQUIT,
	"TSTP": syscall.SIGTSTP, "HUP": syscall.SIGHUP, "KILL": syscall.SIGKILL,
	"CONT": syscall.SIGCONT, "WINCH": syscall.SIGWINCH,
}

func (h *Host) signal(name string) {
	if name == "INT" {
		h.mu.Lock()
		c := h.running
		h.mu.Unlock()
		if c != nil {
			h.interrupt(c)
		}
		return
	}
	if sig, ok := signals[name]; ok {
		h.rs.Signal(sig)
	}
}

// resize sets the running TTY command's window size (pty.go).
func (h *Host) resize(rows, cols int) { h.resizePTY(rows, cols) }

// Holding. A session is held, and Busy for every other client, exactly
// while a client is attached to it: following a command it runs, streaming
// a receive (h.att), or sitting in tether enter (h.hold, a channel enter
// keeps open between its commands). When that attachment ends, for
// whatever reason (the command ended, the client exited or was killed, the
// transport broke), nobody holds the session. connect attaches nothing: it
// only makes a Disconnected session Opened again.

// holderLocked is the attachment that holds the session, if any.
func (h *Host) holderLocked() (*attachment, bool) {
	if h.att != nil {
		return h.att, true
	}
	if h.hold != nil {
		return h.hold, true
	}
	return nil, false
}

// checkHeldLocked refuses client when another client is attached, unless
// it forces a takeover.
func (h *Host) checkHeldLocked(client wire.Client, force bool) error {
	if force {
		return nil
	}
	if a := h.att; a != nil && a.client.ID != client.ID {
		return wire.Errorf(wire.CodeBusy, "session %s is Busy: attached to %s since %s; use --force to take it over",
			h.opts.Name, a.client.Host, a.since.Format(time.RFC3339))
	}
	if a := h.hold; a != nil && a.client.ID != client.ID {
		return wire.Errorf(wire.CodeBusy, "session %s is Busy: in tether enter on %s since %s; use --force to take it over",
			h.opts.Name, a.client.Host, a.since.Format(time.RFC3339))
	}
	return nil
}

// takeOverLocked ends the attachments client replaces: the stream of any
// client (one stream at a time), and another client's enter.
func (h *Host) takeOverLocked(client wire.Client) {
	if h.att != nil {
		reason := "session taken over by " + client.Host
		if h.att.client.ID == client.ID {
			reason = "session reattached by the same client"
		}
		h.att.kick(reason)
	}
	if h.hold != nil && h.hold.client.ID != client.ID {
		h.dropHoldLocked("session taken over by " + client.Host)
	}
}

// dropHoldLocked ends an enter's hold, telling its client why.
func (h *Host) dropHoldLocked(reason string) {
	if h.hold != nil {
		h.hold.kick(reason)
		h.hold = nil
	}
}

// opHold serves connect with Hold: tether enter holds the session while the
// channel is open, so that between its commands too other clients find it
// Busy. The host answers like connect, then waits for the client to close
// the channel (or vanish), or for another client to take over.
func (h *Host) opHold(c *wire.Conn, req *wire.Request) {
	h.mu.Lock()
	err := h.checkHeldLocked(req.Client, req.Force)
	if h.closing {
		err = h.closingErrLocked()
	}
	if err != nil {
		h.mu.Unlock()
		c.WriteJSON(wire.TResponse, wire.Refuse(err))
		return
	}
	// Unlike claimLocked, the client's own command stream goes on: enter
	// holds the session around its commands.
	if h.att != nil && h.att.client.ID != req.Client.ID {
		h.att.kick("session taken over by " + req.Client.Host)
	}
	reason := "session taken over by " + req.Client.Host
	if h.hold != nil && h.hold.client.ID == req.Client.ID {
		reason = "session reattached by the same client"
	}
	h.dropHoldLocked(reason)
	h.disconnected = false
	h.graceUntil = time.Time{}
	a := newAttachment(c, req.Client, h.now())
	h.hold = a
	h.setIdleOverrideLocked(req.IdleTimeout)
	info := h.infoLocked()
	h.mu.Unlock()
	h.poke()
	c.WriteJSON(wire.TResponse, wire.Response{OK: true, Session: &info})

	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, _, err := c.Read(); err != nil {
				return
			}
		}
	}()
	select {
	case <-gone:
	case <-a.kicked:
		c.WriteJSON(wire.TEvent, wire.Event{Kind: "detached", Reason: a.reason})
	case <-h.closed:
		// No event: the client's next request is told by the agent who
		// closed the session, when and why (its tombstone).
	}
	h.mu.Lock()
	if h.hold == a {
		h.hold = nil
		h.idleSince = h.now()
	}
	h.mu.Unlock()
	h.poke()
}
