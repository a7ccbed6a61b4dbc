package agent

import "sync"

// gcFloor raises the Go collector's heap goal for the agent by a fixed
// amount. x/crypto/ssh allocates every packet it receives (32 KiB), so a
// client's stdin flowing into a session makes the agent allocate as fast as
// it relays. With the agent's small live heap the default goal (twice the
// live heap, at least 4 MiB) ran a collection every few MiB, and the
// scavenger returned the freed pages to the kernel only for the next
// packets to fault them in again: 1 GiB of input cost the agent 2.7–3.0
// CPU-s, 1.4–1.6 with the floor (#18). The floor is one pointer-free
// allocation that is never written, so its pages are never touched and cost
// no resident memory; what it costs is up to gcFloorBytes more garbage held
// between collections while bulk data flows. GOGC still scales the goal
// above the floor, as it does without one.
var (
	gcFloorOnce sync.Once
	gcFloor     []byte
)

const gcFloorBytes = 16 << 20

func raiseGCFloor() {
	gcFloorOnce.Do(func() { gcFloor = make([]byte, gcFloorBytes) })
}
