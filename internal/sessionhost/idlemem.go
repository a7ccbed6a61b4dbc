package sessionhost

import "strings"

// An idle session host should cost little memory: there may be a thousand of
// them.
//
// The agent starts it with RuntimeEnv: one P (GOMAXPROCS=1) instead of one
// per CPU. The session host sleeps while idle and its commands run in their
// own processes; every further P costs the idle process its own cache of
// partly used heap spans, stacks and a thread (~300 KiB). The Go runtime reads
// GOMAXPROCS only when the process starts (runtime.GOMAXPROCS later keeps what
// start-up already touched), hence the environment; CommandEnv takes it out
// again so that the commands of the session do not inherit it.

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
