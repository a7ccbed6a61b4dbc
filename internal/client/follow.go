package client

import (
	"context"
	"errors"
	"fmt"
	"github.com/tether-sh/tether/internal/clock"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// follower is the resume core that a run and a receive share: it reads a
// session's stream of records, delivers each exactly once, acks what it
// delivered, and when the transport breaks dials again and resumes after
// the last record it delivered. What ends the stream, and how to resume
// it, is its stream's (runStream, receiveStream).
type follower struct {
	d      *Dialer
	target Target // as the caller gave it; messages name it
	stream stream

	stdout, stderr   io.Writer
	notifyTo         io.Writer
	reconnectTimeout time.Duration // 0: DefaultReconnectTimeout; negative: never reconnect
	signals          <-chan string
	resize           <-chan [2]int

	conn    *Conn
	owned   []*Conn // connections this follower dialled, closed at the end
	session string
	keep    bool // the channel is kept for the next run in the session (keptChannels)
	lastSeq atomic.Uint64
	stdin   *stdinSender
	res     Result
}

// stream is what a follower follows.
type stream interface {
	// resume opens a new attachment on c after the last delivered record.
	resume(c *Conn) (*wire.Conn, ssh.Channel, error)
	// takesExit reports whether the result takes exit record o's status.
	takesExit(o wire.Output) bool
	// finished reports whether record o ends what is followed.
	finished(o wire.Output) bool
	// empty reports, before a record is read, that nothing is left.
	empty() bool
}

func (f *follower) closeOwned() {
	for _, c := range f.owned {
		c.Close()
	}
}

// dial opens a connection of the follower's own to target.
func (f *follower) dial(ctx context.Context, target Target) (*Conn, error) {
	c, err := f.d.Dial(ctx, target)
	if err != nil {
		return nil, err
	}
	f.owned = append(f.owned, c)
	f.conn = c
	return c, nil
}

func (f *follower) notify(format string, args ...any) {
	if f.notifyTo != nil {
		fmt.Fprintf(f.notifyTo, "tether: "+format+"\n", args...)
	}
}

func (f *follower) timeout() time.Duration {
	if f.reconnectTimeout == 0 {
		return DefaultReconnectTimeout
	}
	return f.reconnectTimeout
}

// open sends req on a new channel of c and reads the host's response: the
// one open/response/check sequence of run, attach and receive. A refusal
// is an error naming shown's host, and closes the channel.
func open(c *Conn, req wire.Request, shown Target) (*wire.Conn, ssh.Channel, wire.Response, error) {
	wc, ch, err := c.Open(req)
	if err != nil {
		return nil, nil, wire.Response{}, asError(err)
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		ch.Close()
		return nil, nil, resp, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	if err := check(resp, ch, shown); err != nil {
		return nil, nil, resp, err
	}
	return wc, ch, resp, nil
}

// check turns a refusal into an error naming shown's host, closing ch.
func check(resp wire.Response, ch ssh.Channel, shown Target) error {
	if resp.OK {
		return nil
	}
	ch.Close()
	return shown.refusal(resp.Error)
}

// attach resumes following command cmd after the last delivered record,
// and stdin where the host's copy of it ends.
func (f *follower) attach(c *Conn, cmd uint32) (*wire.Conn, ssh.Channel, error) {
	wc, ch, resp, err := open(c, wire.Request{
		Op: wire.OpAttach, Session: f.session, Client: f.d.Client,
		Cmd: cmd, After: f.lastSeq.Load(), Grace: wire.Duration(f.timeout()),
	}, c.shown)
	if err != nil {
		return nil, nil, err
	}
	if f.stdin != nil {
		f.stdin.resume(resp.StdinOffset)
	}
	return wc, ch, nil
}

// followToEnd follows the stream, reconnecting and resuming as often as
// the transport breaks, until what it follows has ended.
func (f *follower) followToEnd(ctx context.Context, wc *wire.Conn, ch ssh.Channel) error {
	for {
		done, err := f.follow(ctx, wc, ch)
		// A kept channel's last ack (frame left it to us) and End in one
		// write: one packet through the agent to the host, not two.
		if done && err == nil && f.keep && wc.WriteFrame(wire.AppendFrame(wire.AppendU64Frame(nil, wire.TAck, f.lastSeq.Load()), wire.TEnd, nil)) == nil {
			wc.EndBulk()
			f.conn.kept.put(f.session, keptChannel{wc, ch})
			return nil
		}
		if done && err == nil {
			// The host closes once it has the final ack and has
			// released the session: wait for that, so that whoever
			// looks at the session after this command returns (a
			// script's next `tether list`) finds it Available, not
			// Busy or Disconnected for a moment.
			waitEOF(wc, 2*time.Second)
		}
		ch.Close()
		if done {
			return err
		}
		f.keep = false // a resumed attachment ends with its channel
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wc, ch, err = f.reconnect(ctx, err); err != nil {
			return err
		}
	}
}

// reconnect dials again with backoff and resumes after the last record.
func (f *follower) reconnect(ctx context.Context, cause error) (*wire.Conn, ssh.Channel, error) {
	limit := f.timeout()
	if limit < 0 {
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, cause)
	}
	clk := clock.Or(f.d.Clock)
	start := clk.Now()
	target := f.target.WithSession(f.session)
	f.notify("connection to %s lost (%v); reconnecting for up to %s", target.HostString(), cause, limit)
	backoff := 50 * time.Millisecond
	var last error = cause
	for clock.Since(clk, start) < limit {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		c, err := f.dial(ctx, target)
		if err == nil {
			wc, ch, err := f.stream.resume(c)
			if err == nil {
				f.notify("reconnected to %s after %s; output resumes", target, clock.Since(clk, start).Round(time.Millisecond))
				return wc, ch, nil
			}
			if !errors.Is(err, ErrTransport) {
				return nil, nil, err // the host said no: closed, taken over
			}
			c.Close()
		} else if errors.Is(err, ErrHostKey) || errors.Is(err, ErrAuth) {
			return nil, nil, err
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-clock.After(clk, backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return nil, nil, fmt.Errorf("%w: could not reconnect to %s within %s (last error: %v); the command goes on in the session: tether receive %s",
		ErrTransport, target.HostString(), limit, last, target)
}

// follow reads one attachment until what it follows ended (done) or the
// transport broke (not done: reconnect).
func (f *follower) follow(ctx context.Context, wc *wire.Conn, ch ssh.Channel) (done bool, err error) {
	a := &attachment{f: f, wc: wc, ch: ch, stop: make(chan struct{}), ackNow: make(chan struct{}, 1)}
	defer a.close()
	if f.stream.empty() {
		a.start(ctx)
		waitEOF(wc, 2*time.Second)
		return true, nil
	}
	started := false
	for {
		// A short command's records, its exit record too, often came
		// with the response (the session host sends them in one
		// write): what is buffered needs none of the attachment's
		// goroutines (a ticker and two goroutine starts per run); they
		// start before the first read that may wait.
		if !started && !wc.FrameBuffered() {
			a.start(ctx)
			started = true
		}
		t, p, err := wc.Read()
		if err != nil {
			return false, err
		}
		if done, err := a.frame(t, p); done || err != nil {
			return done, err
		}
	}
}

// attachment is one channel's worth of following: the frames read from it
// and the goroutines that write acks, stdin, signals and resizes to it.
type attachment struct {
	f       *follower
	wc      *wire.Conn
	ch      ssh.Channel
	stop    chan struct{}
	wg      sync.WaitGroup
	ackNow  chan struct{}
	unacked int
	bulk    int // output bytes received, until bulkAfter
}

// After bulkAfter bytes of output an attachment reads its channel in reads
// of up to bulkRead bytes (wire.Conn.ReadBulk): a short command's output
// never pays for the buffer, and a bulk one holds 1 MiB next to the 2 MiB
// that x/crypto/ssh's channel window lets the agent have in flight.
const (
	bulkAfter = 256 << 10
	bulkRead  = 1 << 20
)

func (a *attachment) close() {
	close(a.stop)
	a.wg.Wait()
}

// start runs the writers: acks batched by time so a chatty command costs
// few frames, stdin, and the caller's signals and terminal size.
func (a *attachment) start(ctx context.Context) {
	a.wg.Add(2)
	go a.acks()
	go a.controls(ctx)
	if a.f.stdin != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.f.stdin.pump(a.wc, a.stop); err != nil {
				a.ch.Close() // the read loop ends with the transport error
			}
		}()
	}
}

func (a *attachment) acks() {
	defer a.wg.Done()
	acked := a.f.lastSeq.Load()
	t := clock.Or(a.f.d.Clock).NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C():
		case <-a.ackNow:
		}
		if seq := a.f.lastSeq.Load(); seq != acked {
			if err := a.wc.WriteU64(wire.TAck, seq, nil); err != nil {
				return
			}
			acked = seq
		}
	}
}

func (a *attachment) controls(ctx context.Context) {
	defer a.wg.Done()
	for {
		select {
		case <-a.stop:
			return
		case <-ctx.Done():
			a.ch.Close()
			return
		case s, ok := <-a.f.signals:
			if !ok {
				return
			}
			a.wc.WriteJSON(wire.TSignal, wire.Signal{Name: s})
		case sz := <-a.f.resize:
			a.wc.WriteResize(sz[0], sz[1])
		}
	}
}

// frame handles one frame from the host; done when what is followed ended.
func (a *attachment) frame(t wire.Type, p []byte) (done bool, err error) {
	switch t {
	case wire.TOutput:
		o, err := wire.DecodeOutput(p)
		if err != nil {
			return false, err
		}
		return a.output(o)
	case wire.TStdinAck:
		off, _, err := wire.DecodeU64(t, p)
		if err == nil && a.f.stdin != nil {
			a.f.stdin.ack(off)
		}
	case wire.TEvent:
		var ev wire.Event
		wire.DecodeJSON(t, p, &ev)
		return true, fmt.Errorf("%w: %s", ErrDetached, ev.Reason)
	case wire.TResponse:
		var resp wire.Response
		wire.DecodeJSON(t, p, &resp)
		if !resp.OK {
			return true, a.f.target.refusal(resp.Error)
		}
	}
	return false, nil
}

// output delivers record o unless it was delivered before a reconnect.
func (a *attachment) output(o wire.Output) (done bool, err error) {
	f := a.f
	if o.Seq <= f.lastSeq.Load() {
		return false, nil
	}
	switch o.Kind {
	case wire.KindStdout:
		if _, err := f.stdout.Write(o.Data); err != nil {
			return true, fmt.Errorf("write output: %w", err)
		}
	case wire.KindStderr:
		f.stderr.Write(o.Data)
	case wire.KindDropped:
		f.res.Dropped += wire.DecodeDropped(o.Data)
	case wire.KindExit:
		if f.stream.takesExit(o) {
			code, msg, _ := wire.DecodeExit(o.Data)
			f.res.ExitCode, f.res.Message = code, msg
		}
	}
	f.lastSeq.Store(o.Seq)
	if f.stream.finished(o) {
		// The host completes on this ack; it needs no answer. A kept
		// channel's goes with its End (followToEnd).
		if !f.keep {
			a.wc.WriteU64(wire.TAck, o.Seq, nil)
		}
		return true, nil
	}
	if a.bulk < bulkAfter {
		// Not on a mux sub-stream: a fan-out's many runs would each hold
		// a buffer, and its reads are of the demultiplexer's queue, not
		// of an SSH channel.
		if _, sub := a.ch.(*muxStream); !sub {
			if a.bulk += len(o.Data); a.bulk >= bulkAfter {
				a.wc.ReadBulk(bulkRead)
			}
		}
	}
	a.unacked += len(o.Data)
	if a.unacked >= 1<<20 {
		a.unacked = 0
		select {
		case a.ackNow <- struct{}{}:
		default:
		}
	}
	return false, nil
}

// waitEOF lets the host read our last ack before the channel closes.
func waitEOF(wc *wire.Conn, limit time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := wc.Read(); err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(limit):
	}
}
