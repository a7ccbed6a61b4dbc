package clock

import (
	"sync"
	"time"
)

// Fake is a clock that moves only when a test advances it. Its timers and
// tickers fire, in deadline order, during Advance; a timer made with a
// duration <= 0 fires at once, as a real one does. Safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeTimer
	changed chan struct{} // closed and replaced when a timer is armed
}

// NewFake returns a fake clock reading start (a fixed date when zero).
func NewFake(start time.Time) *Fake {
	if start.IsZero() {
		start = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d, firing what falls due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	var due []*fakeTimer
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.when.After(now) {
			due = append(due, w)
			if w.period > 0 {
				// A ticker fires once per Advance, however many
				// periods passed (its channel holds one tick, as a
				// real ticker's does).
				for !w.when.After(now) {
					w.when = w.when.Add(w.period)
				}
				keep = append(keep, w)
			} else {
				w.armed = false
			}
			continue
		}
		keep = append(keep, w)
	}
	clear(f.waiters[len(keep):])
	f.waiters = keep
	f.mu.Unlock()
	for _, w := range due {
		w.fire(now)
	}
}

// Waiters is the number of armed timers and tickers.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Armed returns a channel closed the next time a timer or ticker is armed
// (made or reset), so a test can wait for the code under test to start
// waiting before it advances the clock.
func (f *Fake) Armed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// NewTimer implements Clock.
func (f *Fake) NewTimer(d time.Duration) Timer {
	w := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	w.Reset(d)
	return w
}

// AfterFunc implements Clock.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	w := &fakeTimer{f: f, fn: fn}
	w.Reset(d)
	return w
}

// NewTicker implements Clock.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	w := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	w.arm(d, d)
	return fakeTicker{w}
}

type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	fn     func()
	when   time.Time
	period time.Duration // tickers
	armed  bool          // guarded by f.mu
}

func (w *fakeTimer) C() <-chan time.Time { return w.c }

func (w *fakeTimer) fire(now time.Time) {
	if w.fn != nil {
		go w.fn()
		return
	}
	select {
	case w.c <- now:
	default:
	}
}

// arm (re)schedules w; it reports whether w was armed before.
func (w *fakeTimer) arm(d, period time.Duration) bool {
	f := w.f
	f.mu.Lock()
	was := w.stopLocked()
	if w.c != nil && period == 0 {
		// Go 1.23 semantics: Reset and Stop discard a pending value.
		select {
		case <-w.c:
		default:
		}
	}
	w.period = period
	w.when = f.now.Add(d)
	if d <= 0 && period == 0 {
		now := f.now
		f.mu.Unlock()
		w.fire(now)
		return was
	}
	w.armed = true
	f.waiters = append(f.waiters, w)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	return was
}

func (w *fakeTimer) stopLocked() bool {
	if !w.armed {
		return false
	}
	w.armed = false
	for i, x := range w.f.waiters {
		if x == w {
			w.f.waiters = append(w.f.waiters[:i], w.f.waiters[i+1:]...)
			break
		}
	}
	return true
}

func (w *fakeTimer) Reset(d time.Duration) bool { return w.arm(d, 0) }

func (w *fakeTimer) Stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	was := w.stopLocked()
	if w.c != nil {
		select {
		case <-w.c:
		default:
		}
	}
	return was
}

type fakeTicker struct{ w *fakeTimer }

func (t fakeTicker) C() <-chan time.Time { return t.w.c }
func (t fakeTicker) Stop()               { t.w.Stop() }
func (t fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	t.w.arm(d, d)
}
