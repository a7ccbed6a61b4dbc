package cli

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A one-target invoke tunes the process for one stream (OneStream: one
// scheduler processor) only once the run has lasted oneStreamAfter: the
// tuning costs a short command more than it saves (#18).
func TestInvokeTunesOnlyLongRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts session hosts (builds the tether binary)")
	}
	ce := newCLIEnv(t)
	host := startCLIAgent(t, ce.pub)
	var tuned atomic.Int32
	ce.OneStream = func() { tuned.Add(1) }
	if code := ce.run(t, "new", host); code != 0 {
		t.Fatalf("new: exit %d: %s", code, ce.errOut.String())
	}
	sess := strings.TrimSpace(ce.out.String())

	defer func(d time.Duration) { oneStreamAfter = d }(oneStreamAfter)
	oneStreamAfter = time.Hour // every run here is short
	if code := ce.run(t, "invoke", sess, "true"); code != 0 {
		t.Fatalf("invoke true: exit %d: %s", code, ce.errOut.String())
	}
	if n := tuned.Load(); n != 0 {
		t.Fatalf("a short run tuned the process %d times", n)
	}

	oneStreamAfter = time.Millisecond // every run here is long
	if code := ce.run(t, "invoke", sess, "sleep 0.5"); code != 0 {
		t.Fatalf("invoke sleep: exit %d: %s", code, ce.errOut.String())
	}
	if n := tuned.Load(); n != 1 {
		t.Fatalf("a long run tuned the process %d times, want 1", n)
	}
	// Several targets never tune: fan-out serves many connections at once.
	if code := ce.run(t, "new", host); code != 0 {
		t.Fatalf("new: exit %d: %s", code, ce.errOut.String())
	}
	other := strings.TrimSpace(ce.out.String())
	if code := ce.run(t, "invoke", sess+","+other, "sleep 0.1"); code != 0 {
		t.Fatalf("invoke on two: exit %d: %s", code, ce.errOut.String())
	}
	if n := tuned.Load(); n != 1 {
		t.Fatalf("a fan-out tuned the process (%d calls)", n)
	}
}

// The binary starts on one scheduler processor (internal/oneproc): a
// one-target invoke keeps it, every other command and a fan-out get all of
// them back through AllProcessors (#18).
func TestAllProcessorsExceptOneTargetInvoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts session hosts (builds the tether binary)")
	}
	ce := newCLIEnv(t)
	host := startCLIAgent(t, ce.pub)
	var given atomic.Int32
	defer func(f func()) { AllProcessors = f }(AllProcessors)
	AllProcessors = func() { given.Add(1) }
	expect := func(what string, want int32) {
		t.Helper()
		if n := given.Swap(0); n != want {
			t.Fatalf("%s: AllProcessors called %d times, want %d", what, n, want)
		}
	}
	if code := ce.run(t, "new", host); code != 0 {
		t.Fatalf("new: exit %d: %s", code, ce.errOut.String())
	}
	sess := strings.TrimSpace(ce.out.String())
	expect("new", 1)
	if code := ce.run(t, "invoke", sess, "true"); code != 0 {
		t.Fatalf("invoke true: exit %d: %s", code, ce.errOut.String())
	}
	expect("a one-target invoke", 0)
	if code := ce.run(t, "new", host); code != 0 {
		t.Fatalf("new: exit %d: %s", code, ce.errOut.String())
	}
	other := strings.TrimSpace(ce.out.String())
	expect("new", 1)
	if code := ce.run(t, "invoke", sess+","+other, "true"); code != 0 {
		t.Fatalf("invoke on two: exit %d: %s", code, ce.errOut.String())
	}
	expect("a fan-out", 1)
	if code := ce.run(t, "version"); code != 0 {
		t.Fatalf("version: exit %d", code)
	}
	expect("version", 1)
}
