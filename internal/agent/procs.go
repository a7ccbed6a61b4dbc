package agent

import (
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/clock"
)

// A `tether serve` runs its Go code on one scheduler processor (P) while it
// is lightly loaded and on all of them once it is busy (Options.ScaleProcs).
// A command through the agent is a few frames each way, and with a second
// P each frame handed between goroutines (x/crypto/ssh's reader, the relay)
// woke a second thread: on the 2-core machine a fresh invoke through a
// connection master cost the agent 741–825 µs of CPU and 26–28 context
// switches with both Ps, 538–614 µs and 17 on one, in turns (#18). One
// stream of bulk output keeps about half a core busy either way; more than
// that, the scaler gives the agent every P. It samples the process's CPU
// time only while a channel runs, so an idle agent wakes for nothing.
const (
	procsSample    = 250 * time.Millisecond // between samples while busy
	procsUp        = 0.6                    // cores used in a sample on one P: all Ps
	procsDown      = 0.2                    // cores used, for procsDownAfter samples in a row: back to one
	procsDownAfter = 8                      // 2 s
)

// procScaler decides the agent's GOMAXPROCS from its CPU use.
type procScaler struct {
	max int                  // all Ps: what the runtime chose (CPUs, or the cgroup's quota)
	set func(n int)          // runtime.GOMAXPROCS
	cpu func() time.Duration // the process's CPU time so far
	clk clock.Clock

	mu       sync.Mutex
	cur      int
	quiet    int  // samples in a row below procsDown
	running  int  // channels running (beginWork … endWork)
	sampling bool // a sampler goroutine runs
}

// newProcScaler starts the agent on one P; nil when there is nothing to
// scale (one CPU, or GOMAXPROCS chosen in the environment).
func newProcScaler() *procScaler {
	if _, set := syscall.Getenv("GOMAXPROCS"); set {
		return nil
	}
	max := runtime.GOMAXPROCS(0)
	if max <= 1 {
		return nil
	}
	p := &procScaler{max: max, cur: max, set: func(n int) { runtime.GOMAXPROCS(n) }, cpu: processCPU, clk: clock.Real()}
	p.apply(1)
	return p
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// apply sets n Ps; p.mu is held (or p is not shared yet).
func (p *procScaler) apply(n int) {
	if n != p.cur {
		p.cur = n
		p.set(n)
	}
	p.quiet = 0
}

// observe takes one sample: cores used since the last one.
func (p *procScaler) observe(cores float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cur == 1 && cores >= procsUp:
		p.apply(p.max)
	case p.cur > 1 && cores < procsDown:
		if p.quiet++; p.quiet >= procsDownAfter {
			p.apply(1)
		}
	default:
		p.quiet = 0
	}
}

// begin counts a running channel and starts sampling with the first.
func (p *procScaler) begin() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.running++
	start := !p.sampling
	p.sampling = true
	p.mu.Unlock()
	if start {
		go p.sample()
	}
}

func (p *procScaler) end() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.running--
	p.mu.Unlock()
}

// sample reads the CPU time every procsSample until nothing runs and the
// agent is back on one P.
func (p *procScaler) sample() {
	last, lastAt := p.cpu(), p.clk.Now()
	for {
		<-clock.After(p.clk, procsSample)
		now, at := p.cpu(), p.clk.Now()
		if d := at.Sub(lastAt); d > 0 {
			p.observe(float64(now-last) / float64(d))
		}
		last, lastAt = now, at
		p.mu.Lock()
		if p.running == 0 && p.cur == 1 {
			p.sampling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}
