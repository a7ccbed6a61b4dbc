// Package clock is the one seam through which the session host, the journal
// and the client read time and wait for it, so that tests can drive idle
// timeouts, grace periods, pacing stalls and reconnect backoff with a fake
// clock in milliseconds instead of real seconds (the shape of tailscale's
// tstime.Clock and tstest.Clock, reduced to what tether uses).
//
// Bounds that only guard against a stuck peer (a writer's grace, a
// handshake deadline) stay on real time: a fake clock that nobody advances
// must not make them wait forever.
package clock

import "time"

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer is time.NewTimer.
	NewTimer(d time.Duration) Timer
	// NewTicker is time.NewTicker.
	NewTicker(d time.Duration) Ticker
	// AfterFunc is time.AfterFunc: f runs in its own goroutine.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a *time.Timer behind an interface; C is a method.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Ticker is a *time.Ticker behind an interface.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// Real is the system clock.
func Real() Clock { return realClock{} }

// Or returns c, or the real clock when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return realClock{}
	}
	return c
}

// After is a one-shot wait on c; the timer is garbage once it fired or is
// unreferenced (Go 1.23 timers need no Stop to be collected).
func After(c Clock, d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

// Since is time.Since on c.
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer            { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker          { return realTicker{time.NewTicker(d)} }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time   { return t.t.C }
func (t realTicker) Stop()                 { t.t.Stop() }
func (t realTicker) Reset(d time.Duration) { t.t.Reset(d) }
