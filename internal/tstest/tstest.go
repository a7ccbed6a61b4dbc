// Package tstest holds the helpers every test package shares: one way to
// wait for a condition.
package tstest

import (
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it is true, and fails the
// test naming what it waited for if timeout passes first. Tests wait with
// it instead of sleeping for "long enough".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}
