package sessionhost

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Shell builtins, loops and subshells run in the session host itself (they
// are goroutines of mvdan/sh's interpreter), not in a process of their own:
// `s=x; while :; do s=$s$s; done` grows the session host. The session host
// is inside its session's cgroup, whose bound (MaxMemoryPerShellMB +
// limits.HostMemoryReserve) stops it for good, but the kernel would do so by
// killing the session host, and with it the session. So while a command
// runs, the session host watches its own memory and interrupts the command,
// with the MaxMemoryPerShellMB message, when the command made it grow past
// builtinAllowance above what it needed at start: a doubling string's last
// step then still fits in the reserve (3 × 16 MiB + base). Under the rlimit
// fallback (no cgroup) the watch is the only bound on the session host's
// memory. Idle, the watch costs nothing: it runs only while a command does.

// memWatchInterval is how often the watch samples while a command runs
// (runtime/metrics.Read: about a microsecond).
const memWatchInterval = 5 * time.Millisecond

// memBaseSlack is added to the session host's memory at start-up for its
// ordinary growth (connections, journal buffers, history).
const memBaseSlack = 8 << 20

// builtinAllowance is how much a command may grow the session host for a
// memory limit l.
func builtinAllowance(l int64) uint64 {
	return uint64(min(l/2, 16<<20))
}

var memBases sync.Map // *Host -> uint64: watchBase's measure

// watchBase measures the session host's memory at start-up (openLimits).
func watchBase(h *Host) uint64 {
	b := hostMemory() + memBaseSlack
	memBases.Store(h, b)
	return b
}

var memSamples = []metrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

var memSampleMu sync.Mutex

// hostMemory is the memory the Go runtime holds from the operating system
// (mapped minus returned): close to the session host's resident size.
func hostMemory() uint64 {
	memSampleMu.Lock()
	defer memSampleMu.Unlock()
	metrics.Read(memSamples)
	total, released := memSamples[0].Value.Uint64(), memSamples[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// watchMemory starts the watch for one command; stop ends it and reports
// whether it interrupted the command.
func (h *Host) watchMemory() (stop func() bool) {
	h.mu.Lock()
	l := h.limits.MaxMemoryBytes
	h.mu.Unlock()
	b, ok := memBases.Load(h)
	if l <= 0 || !ok {
		return func() bool { return false }
	}
	start := hostMemory()
	limit := max(b.(uint64), start) + builtinAllowance(l)
	if start > b.(uint64) {
		// What an earlier command left (a big variable) is not this
		// command's; it still must not grow much more.
		limit = start + builtinAllowance(l)/2
	}
	// The collector works to stay below the limit, so that garbage does
	// not count as growth.
	prev := debug.SetMemoryLimit(int64(limit))
	done, quit := make(chan struct{}), make(chan struct{})
	fired := false
	go func() {
		defer close(done)
		t := time.NewTicker(memWatchInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			// The runtime's memory limit (set to the same) collects and
			// returns garbage to keep this figure below it: over it means
			// live memory, no need for a (slow) forced collection.
			// Output the client has not acknowledged yet is held in
			// memory by the journal: it is the client's lag, not the
			// command's growth (a `cat` of 50 MB to a slow client);
			// so is the journal's tail, which holds acknowledged
			// output it never wrote too (up to a segment's worth).
			if hostMemory() <= limit+uint64(max(h.j.Unacked(), h.j.MemoryBytes(), 0)) {
				continue
			}
			fired = true
			h.log.Warn("command stopped: it grew the session host past its memory allowance",
				"memory", hostMemory(), "limit", limit)
			h.rs.Interrupt()
			return
		}
	}()
	return func() bool {
		close(quit)
		<-done
		if prev == math.MaxInt64 || prev <= 0 {
			prev = math.MaxInt64
		}
		debug.SetMemoryLimit(prev)
		return fired
	}
}
