package client

import (
	"bytes"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestProgressNeverMixesIntoOutput writes output lines from many goroutines
// through the fan-out's writers while the progress line is drawn on the same
// terminal (one buffer): every output line must start right after the line
// was cleared and no progress text may sit inside a line.
func TestProgressNeverMixesIntoOutput(t *testing.T) {
	var term bytes.Buffer
	var done, failed atomic.Int64
	f := &FanOut{Progress: &term}
	mu := new(sync.Mutex)
	p := f.startProgress(mu, 10, &done, &failed)
	out := &lockedWriter{mu: mu, w: &term, progress: p}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pl := &prefixLines{w: out, prefix: fmt.Sprintf("t%d: ", g)}
			for i := range 200 {
				fmt.Fprintf(pl, "line %d\n", i)
				if i%50 == 0 {
					failed.Add(1)
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	p.stop()
	s := term.String()
	if !strings.Contains(s, "failed") {
		t.Fatalf("the progress line was never drawn: %q", s[:min(len(s), 200)])
	}
	// Split at each clear: a piece is either progress text (no newline) or
	// exactly one output line.
	for _, piece := range strings.Split(s, "\r\033[K") {
		if piece == "" {
			continue
		}
		if strings.HasPrefix(piece, "[") {
			if strings.Contains(piece, "\n") || !regexp.MustCompile(`^\[\d+/10\] \d+ failed, \d+\.\ds$`).MatchString(piece) {
				t.Fatalf("progress mixed with output: %q", piece)
			}
			continue
		}
		if !regexp.MustCompile(`^t\d: line \d+\n$`).MatchString(piece) {
			t.Fatalf("output line not cleared before, or mixed: %q", piece)
		}
	}
	if !strings.HasSuffix(s, "\r\033[K") {
		t.Errorf("the progress line is not erased at the end: %q", s[max(0, len(s)-60):])
	}
	// After stop nothing redraws it.
	fmt.Fprintf(&prefixLines{w: out, prefix: "late: "}, "x\n")
	if strings.Contains(term.String()[len(s):], "failed") {
		t.Errorf("progress redrawn after stop: %q", term.String()[len(s):])
	}
}

// TestEachHonoursThrottle runs 100 calls with a throttle of 3 and checks
// that no more than 3 ever ran at once, and that every index ran once.
func TestEachHonoursThrottle(t *testing.T) {
	var cur, peak atomic.Int64
	seen := make([]atomic.Int64, 100)
	release := make(chan struct{})
	go func() {
		// Let calls pile up against the throttle, then let them go.
		for cur.Load() < 3 {
			runtime.Gosched()
		}
		close(release)
	}()
	Each(100, 3, func(i int) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		seen[i].Add(1)
		cur.Add(-1)
	})
	if peak.Load() != 3 {
		t.Errorf("peak concurrency %d, want 3", peak.Load())
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("index %d ran %d times", i, seen[i].Load())
		}
	}
}
