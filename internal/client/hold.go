package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// Hold is a session held by this client while it is open (tether enter):
// other clients find the session Busy between its commands too. It ends
// when closed, when its connection breaks, or when another client takes
// the session over.
type Hold struct {
	ch   ssh.Channel
	Info wire.SessionInfo

	done   chan struct{}
	mu     sync.Mutex
	reason string // set when the host took the hold away
}

// Hold takes session on c for as long as the returned Hold is open. A
// refusal (no such session, Busy) is an error wrapping the sentinel.
func (c *Conn) Hold(ctx context.Context, session string, client wire.Client, force bool) (*Hold, error) {
	wc, ch, err := c.Open(wire.Request{Op: wire.OpConnect, Hold: true, Session: session, Client: client, Force: force})
	if err != nil {
		return nil, asError(err)
	}
	type result struct {
		resp wire.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		r.err = wc.ReadJSON(wire.TResponse, &r.resp)
		got <- r
	}()
	var r result
	select {
	case <-ctx.Done():
		ch.Close()
		return nil, ctx.Err()
	case r = <-got:
	}
	if r.err != nil {
		ch.Close()
		return nil, fmt.Errorf("%w: %v", ErrTransport, r.err)
	}
	if !r.resp.OK {
		ch.Close()
		return nil, c.shown.refusal(r.resp.Error)
	}
	h := &Hold{ch: ch, done: make(chan struct{})}
	if r.resp.Session != nil {
		h.Info = *r.resp.Session
	}
	go h.watch(wc)
	return h, nil
}

func (h *Hold) watch(wc *wire.Conn) {
	defer close(h.done)
	for {
		t, p, err := wc.Read()
		if err != nil {
			return
		}
		if t == wire.TEvent {
			var ev wire.Event
			if wire.DecodeJSON(t, p, &ev) == nil {
				h.mu.Lock()
				h.reason = ev.Reason
				h.mu.Unlock()
			}
		}
	}
}

// Lost reports whether the hold has ended, and if the host ended it (the
// session was taken over, disconnected or closed), why; an empty reason
// means the connection went away.
func (h *Hold) Lost() (lost bool, reason string) {
	select {
	case <-h.done:
	default:
		return false, ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return true, h.reason
}

// Close lets the session go. It waits (briefly) for the host to close its
// end, which it does once it has let go, so that whoever looks at the
// session after enter returns (a script's next tether list) finds it free.
func (h *Hold) Close() {
	h.ch.CloseWrite()
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
	}
	h.ch.Close()
}
