package agent

import (
	"sync"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/clock"
	"github.com/tether-sh/tether/internal/tstest"
)

// fakeProcs is a procScaler over a fake clock and CPU time.
type fakeProcs struct {
	*procScaler
	clk *clock.Fake
	mu  sync.Mutex
	cpu time.Duration
	got []int // GOMAXPROCS set, in order
}

func newFakeProcs(max int) *fakeProcs {
	f := &fakeProcs{clk: clock.NewFake(time.Time{})}
	f.procScaler = &procScaler{max: max, cur: max, clk: f.clk,
		set: func(n int) { f.mu.Lock(); f.got = append(f.got, n); f.mu.Unlock() },
		cpu: func() time.Duration { f.mu.Lock(); defer f.mu.Unlock(); return f.cpu }}
	f.apply(1)
	return f
}

// use advances the clock one sample, the process having used cores of CPU.
func (f *fakeProcs) use(t *testing.T, cores float64) {
	t.Helper()
	armed := f.clk.Armed()
	if f.clk.Waiters() == 0 {
		<-armed // the sampler waits for its next sample
	}
	f.mu.Lock()
	f.cpu += time.Duration(cores * float64(procsSample))
	f.mu.Unlock()
	f.clk.Advance(procsSample)
}

func (f *fakeProcs) sets() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.got...)
}

func TestProcScalerObserve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []float64 // cores used per sample
		want    int       // Ps after them
	}{
		{"light load stays on one P", []float64{0.1, 0.5, 0.59, 0.3}, 1},
		{"a busy sample gives all Ps", []float64{0.1, 0.7}, 4},
		{"all Ps while the load lasts", []float64{0.9, 0.3, 0.25, 0.5, 1.5}, 4},
		{"back to one after 2 s quiet", append([]float64{0.9}, repeatSamples(0.1, procsDownAfter)...), 1},
		{"a busy sample restarts the quiet count", append(append([]float64{0.9}, repeatSamples(0.1, procsDownAfter-1)...), 0.3, 0.1), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProcs(4)
			for _, c := range tc.samples {
				f.observe(c)
			}
			if f.cur != tc.want {
				t.Fatalf("after %v: %d Ps, want %d", tc.samples, f.cur, tc.want)
			}
		})
	}
}

func repeatSamples(c float64, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = c
	}
	return s
}

// The scaler samples only while channels run, and once nothing runs and
// it is back on one P its sampler ends: an idle agent takes no samples.
func TestProcScalerSamplesOnlyWhileBusy(t *testing.T) {
	f := newFakeProcs(2)
	if got := f.sets(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("start: GOMAXPROCS set %v, want [1]", got)
	}
	f.begin()
	f.use(t, 1.2) // a bulk stream: all Ps
	tstest.WaitFor(t, 5*time.Second, "all Ps", func() bool { s := f.sets(); return s[len(s)-1] == 2 })
	f.end()
	for range procsDownAfter {
		f.use(t, 0)
	}
	tstest.WaitFor(t, 5*time.Second, "one P again", func() bool { s := f.sets(); return s[len(s)-1] == 1 })
	tstest.WaitFor(t, 5*time.Second, "the sampler to end", func() bool {
		f.procScaler.mu.Lock()
		defer f.procScaler.mu.Unlock()
		return !f.sampling
	})
	if n := f.clk.Waiters(); n != 0 {
		t.Fatalf("%d timers armed on an idle agent", n)
	}
	if got := f.sets(); len(got) != 3 {
		t.Fatalf("GOMAXPROCS set %v, want [1 2 1]", got)
	}
}
