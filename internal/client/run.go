package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// RunSpec describes one command to run in a session.
type RunSpec struct {
	Target  Target       // a session address, or a bare host for a temporary session
	Request wire.Request // Op "run": Command or Argv, Detach, TTY; Session is filled from Target
	Stdin   io.Reader    // nil: the command's stdin is empty
	Stdout  io.Writer
	Stderr  io.Writer
	// ReconnectTimeout bounds automatic reconnection after a broken
	// transport; 0 means 4 minutes, negative disables it.
	ReconnectTimeout time.Duration
	Notify           io.Writer                            // reconnect notices; nil discards them
	Signals          <-chan string                        // signal names to deliver to the command
	Resize           <-chan [2]int                        // terminal rows, cols
	OnStart          func(session string, temporary bool) // called once the host accepted the command
	// KeepChannel keeps the channel, once the command has ended, for the
	// next run in the same session on the same connection: for callers
	// that hold a connection for many commands. Runs with stdin, a
	// terminal, a module or Detach never keep theirs.
	KeepChannel bool
}

// Result is how a command ended.
type Result struct {
	Session  string
	ExitCode int
	Message  string // why the host stopped it, if a limit did
	Dropped  uint64 // output bytes dropped by the journal in drop mode
}

// DefaultReconnectTimeout is how long a client tries to get back to a
// session after the transport broke, as PowerShell's robust connections.
const DefaultReconnectTimeout = 4 * time.Minute

// Run runs spec on conn (or a connection of its own when conn is nil) and
// follows its output to the end, reconnecting and resuming exactly where it
// left off if the transport breaks.
func (d *Dialer) Run(ctx context.Context, conn *Conn, spec RunSpec) (Result, error) {
	r := &runner{d: d, spec: spec, conn: conn}
	defer r.closeOwned()
	return r.run(ctx)
}

type runner struct {
	d     *Dialer
	spec  RunSpec
	conn  *Conn
	owned []*Conn

	session string
	keep    bool // the channel is kept for the next run in the session (keptChannels)
	cmd     uint32
	receive bool   // following a receive rather than one command
	until   uint64 // receive with no command running: the last seq to deliver
	lastSeq atomic.Uint64
	stdin   *stdinSender
	res     Result
}

func (r *runner) closeOwned() {
	for _, c := range r.owned {
		c.Close()
	}
}

func (r *runner) notify(format string, args ...any) {
	if r.spec.Notify != nil {
		fmt.Fprintf(r.spec.Notify, "tether: "+format+"\n", args...)
	}
}

func (r *runner) run(ctx context.Context) (Result, error) {
	// Only plain runs keep their channel: stdin and terminals leave state
	// on it that the next command must not inherit.
	r.keep = r.spec.KeepChannel && r.conn != nil && r.spec.Target.Session != "" && r.spec.Stdin == nil &&
		r.spec.Request.TTY == nil && !r.spec.Request.Detach && r.spec.Request.Module == ""
	if r.conn == nil {
		c, err := r.d.Dial(ctx, r.spec.Target)
		if err != nil {
			return r.res, err
		}
		r.conn = c
		r.owned = append(r.owned, c)
	}
	req := r.spec.Request
	req.Op = wire.OpRun
	req.Session = r.spec.Target.Session
	req.Client = r.d.Client
	req.Stdin = r.spec.Stdin != nil
	if req.Grace == 0 {
		req.Grace = wire.Duration(r.reconnectTimeout())
	}
	req.Reuse = r.keep
	wc, ch, resp, err := r.start(req)
	if err != nil {
		return r.res, err
	}
	if !resp.OK {
		ch.Close()
		return r.res, r.spec.Target.refusal(resp.Error)
	}
	r.cmd = resp.Cmd
	r.lastSeq.Store(resp.StartSeq)
	r.session = r.spec.Target.Session
	if resp.Session != nil {
		r.session = resp.Session.Name
	}
	r.res.Session = r.session
	if r.spec.OnStart != nil {
		r.spec.OnStart(r.session, resp.Session != nil && resp.Session.Temporary)
	}
	if req.Detach {
		ch.Close()
		return r.res, nil
	}
	if r.spec.Stdin != nil {
		r.stdin = newStdinSender(r.spec.Stdin)
	}
	return r.res, r.followToEnd(ctx, wc, ch)
}

// start sends req on a kept channel to the session when there is one, or
// on a new channel, and reads the host's response.
func (r *runner) start(req wire.Request) (*wire.Conn, ssh.Channel, wire.Response, error) {
	var resp wire.Response
	if r.keep {
		if kc, ok := r.conn.kept.take(req.Session); ok {
			if kc.wc.WriteJSON(wire.TRequest, req) == nil && kc.wc.ReadJSON(wire.TResponse, &resp) == nil {
				return kc.wc, kc.ch, resp, nil
			}
			// The kept channel died while idle (session closed, agent
			// restarted): the host never read the request, so sending
			// it again on a new channel runs it once.
			kc.ch.Close()
			resp = wire.Response{}
		}
	}
	wc, ch, err := r.conn.Open(req)
	if err != nil {
		return nil, nil, resp, asError(err)
	}
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		ch.Close()
		return nil, nil, resp, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	return wc, ch, resp, nil
}

// followToEnd follows the stream, reconnecting and resuming as often as
// the transport breaks, until what it follows has ended.
func (r *runner) followToEnd(ctx context.Context, wc *wire.Conn, ch ssh.Channel) error {
	for {
		done, err := r.follow(ctx, wc, ch)
		if done && err == nil && r.keep && wc.Write(wire.TEnd) == nil {
			r.conn.kept.put(r.session, keptChannel{wc, ch})
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
		r.keep = false // a resumed attachment ends with its channel
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wc, ch, err = r.reconnect(ctx, err); err != nil {
			return err
		}
	}
}

func (r *runner) reconnectTimeout() time.Duration {
	if r.spec.ReconnectTimeout == 0 {
		return DefaultReconnectTimeout
	}
	return r.spec.ReconnectTimeout
}

// reconnect dials again with backoff and resumes after the last record.
func (r *runner) reconnect(ctx context.Context, cause error) (*wire.Conn, ssh.Channel, error) {
	limit := r.reconnectTimeout()
	if limit < 0 {
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, cause)
	}
	start := time.Now()
	target := r.spec.Target.WithSession(r.session)
	r.notify("connection to %s lost (%v); reconnecting for up to %s", target.HostString(), cause, limit)
	backoff := 50 * time.Millisecond
	var last error = cause
	for time.Since(start) < limit {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		c, err := r.d.Dial(ctx, target)
		if err == nil {
			r.owned = append(r.owned, c)
			r.conn = c
			wc, ch, err := r.attach(c)
			if err == nil {
				r.notify("reconnected to %s after %s; output resumes", target, time.Since(start).Round(time.Millisecond))
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
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return nil, nil, fmt.Errorf("%w: could not reconnect to %s within %s (last error: %v); the command goes on in the session: tether receive %s",
		ErrTransport, target.HostString(), limit, last, target)
}

func (r *runner) attach(c *Conn) (*wire.Conn, ssh.Channel, error) {
	if r.receive && r.cmd == 0 {
		return r.openReceive(c, false, false)
	}
	req := wire.Request{
		Op: wire.OpAttach, Session: r.session, Client: r.d.Client,
		Cmd: r.cmd, After: r.lastSeq.Load(), Grace: wire.Duration(r.reconnectTimeout()),
	}
	wc, ch, err := c.Open(req)
	if err != nil {
		return nil, nil, err
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("%w: %v", ErrTransport, err)
	}
	if !resp.OK {
		ch.Close()
		return nil, nil, c.shown.refusal(resp.Error)
	}
	if r.stdin != nil {
		r.stdin.resume(resp.StdinOffset)
	}
	return wc, ch, nil
}

// follow reads the attachment until the command's exit record (done) or a
// transport error (not done: reconnect).
func (r *runner) follow(ctx context.Context, wc *wire.Conn, ch ssh.Channel) (done bool, err error) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	var sendErr atomic.Value

	// Acks: batched by time so a chatty command costs few frames.
	acked := r.lastSeq.Load()
	ackNow := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			case <-ackNow:
			}
			if seq := r.lastSeq.Load(); seq != acked {
				if err := wc.WriteU64(wire.TAck, seq, nil); err != nil {
					return
				}
				acked = seq
			}
		}
	}()
	if r.stdin != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.stdin.pump(wc, stop); err != nil {
				sendErr.Store(err)
				ch.Close()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				ch.Close()
				return
			case s, ok := <-r.spec.Signals:
				if !ok {
					return
				}
				wc.WriteJSON(wire.TSignal, wire.Signal{Name: s})
			case sz := <-r.spec.Resize:
				wc.WriteResize(sz[0], sz[1])
			}
		}
	}()

	var unacked int
	if r.receive && r.cmd == 0 && r.lastSeq.Load() >= r.until {
		waitEOF(wc, 2*time.Second)
		return true, nil
	}
	for {
		t, p, err := wc.Read()
		if err != nil {
			return false, err
		}
		switch t {
		case wire.TOutput:
			o, err := wire.DecodeOutput(p)
			if err != nil {
				return false, err
			}
			if o.Seq <= r.lastSeq.Load() {
				continue // already delivered before a reconnect
			}
			switch o.Kind {
			case wire.KindStdout:
				if _, err := r.spec.Stdout.Write(o.Data); err != nil {
					return true, fmt.Errorf("write output: %w", err)
				}
			case wire.KindStderr:
				r.spec.Stderr.Write(o.Data)
			case wire.KindDropped:
				r.res.Dropped += wire.DecodeDropped(o.Data)
			case wire.KindExit:
				if o.Cmd == r.cmd || r.receive {
					code, msg, _ := wire.DecodeExit(o.Data)
					r.res.ExitCode, r.res.Message = code, msg
				}
			}
			r.lastSeq.Store(o.Seq)
			if r.finished(o) {
				// The host completes on this ack; it needs no answer.
				wc.WriteU64(wire.TAck, o.Seq, nil)
				return true, nil
			}
			unacked += len(o.Data)
			if unacked >= 1<<20 {
				unacked = 0
				select {
				case ackNow <- struct{}{}:
				default:
				}
			}
		case wire.TStdinAck:
			off, _, err := wire.DecodeU64(t, p)
			if err == nil && r.stdin != nil {
				r.stdin.ack(off)
			}
		case wire.TEvent:
			var ev wire.Event
			wire.DecodeJSON(t, p, &ev)
			return true, fmt.Errorf("%w: %s", ErrDetached, ev.Reason)
		case wire.TResponse:
			var resp wire.Response
			wire.DecodeJSON(t, p, &resp)
			if !resp.OK {
				return true, r.spec.Target.refusal(resp.Error)
			}
		}
	}
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

// finished reports whether record o ends what this runner follows.
func (r *runner) finished(o wire.Output) bool {
	if r.cmd != 0 {
		return o.Kind == wire.KindExit && o.Cmd == r.cmd
	}
	return r.receive && o.Seq >= r.until
}
