package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBarLineAndClear(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "copying")
	now := b.start
	b.now = func() time.Time { return now }
	b.SetMax(2000)
	now = now.Add(time.Second)
	b.Add(1000)
	got := out.String()
	if !strings.Contains(got, "copying  50% |") || !strings.Contains(got, "(1.0 kB/2.0 kB, 1.0 kB/s)") || !strings.Contains(got, "[1s:1s]") {
		t.Fatalf("bar line %q", got)
	}
	// A redraw within the throttle is skipped; Clear blanks the line.
	before := out.Len()
	b.Add(1)
	if out.Len() != before {
		t.Fatalf("redrew within %s: %q", throttle, out.String()[before:])
	}
	b.Clear()
	if tail := out.String()[before:]; !strings.HasPrefix(tail, "\r ") || !strings.HasSuffix(tail, "\r") || strings.TrimSpace(tail) != "" {
		t.Fatalf("clear wrote %q", tail)
	}
	b.Finish() // nothing left to erase
	if out.Len() != before+len(out.String()[before:]) {
		t.Fatal("finish after clear wrote again")
	}
}

func TestBarGrowingTotalAndNoTotal(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "copying")
	b.Add(5)
	if !strings.Contains(out.String(), "copying (5 B,") {
		t.Fatalf("no-total line %q", out.String())
	}
	now := time.Now()
	b.now = func() time.Time { return now }
	b.SetMax(10)
	now = now.Add(throttle)
	b.SetMax(100) // the total grows as files are found
	if s := out.String(); !strings.Contains(s, "5 B/100 B") {
		t.Fatalf("grown total not shown: %q", s)
	}
}

func TestBarConcurrentAdds(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "x")
	b.SetMax(1000)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Add(1)
			}
		}()
	}
	wg.Wait()
	if b.n != 1000 {
		t.Fatalf("counted %d of 1000", b.n)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1536000: "1.5 MB", 3 << 40: "3.3 TB", 5e15: "5000.0 TB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
