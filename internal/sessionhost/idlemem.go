package sessionhost

import (
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"
)

// An idle session host should cost little memory: there may be a thousand of
// them. Two things keep it small.
//
// The agent starts it with RuntimeEnv: one P (GOMAXPROCS=1) instead of one
// per CPU. The session host sleeps while idle and its commands run in their
// own processes; every further P costs the idle process its own cache of
// partly used heap spans, stacks and a thread (~300 KiB). The Go runtime reads
// GOMAXPROCS only when the process starts (runtime.GOMAXPROCS later keeps what
// start-up already touched), hence the environment; CommandEnv takes it out
// again so that the commands of the session do not inherit it.
//
// Once a session has gone idle after work (idleTrimDelay with no command
// and no client attached), trim returns the memory the work left behind to
// the operating system. Without it, a session host that ran commands keeps
// several MiB: the Go runtime collects garbage only as more is allocated,
// and keeps freed heap up to its next collection goal. A session that has
// allocated little since start-up (or since the last trim) is left alone: a
// collection then touches more (mark state, a worker's stack) than it frees.

// RuntimeEnv is added to the session host's environment by the agent.
var RuntimeEnv = []string{"GOMAXPROCS=1"}

// CommandEnv is env without what RuntimeEnv added.
func CommandEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		drop := false
		for _, r := range RuntimeEnv {
			if k, _, _ := strings.Cut(r, "="); strings.HasPrefix(kv, k+"=") {
				drop = true
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

const (
	// idleTrimDelay is how long a session stays idle before it trims: long
	// enough not to run a collection between the commands of a script or
	// a person typing.
	idleTrimDelay = 5 * time.Second
	// idleTrimMin is how much a session must have allocated since start-up
	// or its last trim for a trim to be worth it.
	idleTrimMin = 1 << 20
)

// heapAllocated is the number of bytes allocated on the heap since the
// process started (cheap: no stop-the-world, unlike runtime.ReadMemStats).
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// trimAtLocked says when the session should next trim, if it should: once
// it has been idle (no command running, no client attached) for
// idleTrimDelay since its last activity after the last trim.
func (h *Host) trimAtLocked() (time.Time, bool) {
	if h.closing || h.running != nil || h.att != nil || !h.idleSince.After(h.trimmedFor) {
		return time.Time{}, false
	}
	return h.idleSince.Add(idleTrimDelay), true
}

// maybeTrim trims if it is due: the session has been idle long enough since
// it last worked, and that work allocated enough to be worth a collection.
func (h *Host) maybeTrim() {
	h.mu.Lock()
	at, ok := h.trimAtLocked()
	if !ok || h.now().Before(at) {
		h.mu.Unlock()
		return
	}
	h.trimmedFor = h.idleSince
	h.mu.Unlock()
	if a := heapAllocated(); a-h.trimmedAlloc >= idleTrimMin {
		debug.FreeOSMemory()
		h.trimmedAlloc = heapAllocated()
	}
}
