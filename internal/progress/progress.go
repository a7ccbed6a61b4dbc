// Package progress draws a one-line progress bar on a terminal: bytes done
// of a total that may still grow, the rate and the time left. It replaces
// schollz/progressbar, whose import of net/http (and with it crypto/tls and
// HTTP/2's tables) every tether process initialised at start-up, bar or no
// bar (#18).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// throttle is the least time between two redraws.
const throttle = 100 * time.Millisecond

// width is the bar's cells.
const width = 20

// Bar is a progress line. Its methods may be called from many goroutines.
type Bar struct {
	mu      sync.Mutex
	w       io.Writer
	desc    string
	max     int64
	n       int64
	start   time.Time
	drawn   time.Time
	lineLen int // runes of the line on screen, 0 when cleared
	now     func() time.Time
}

// New is a bar writing to w (a terminal) that describes itself as desc.
func New(w io.Writer, desc string) *Bar {
	b := &Bar{w: w, desc: desc, now: time.Now}
	b.start = b.now()
	return b
}

// SetMax sets the total the bar counts up to.
func (b *Bar) SetMax(max int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.max = max
	b.draw(false)
}

// Add counts n more bytes done.
func (b *Bar) Add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += n
	b.draw(false)
}

// Clear erases the line, so that a message can be printed; the next
// redraw puts it back.
func (b *Bar) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clear()
}

// Finish erases the line for good.
func (b *Bar) Finish() { b.Clear() }

func (b *Bar) clear() {
	if b.lineLen > 0 {
		fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", b.lineLen))
		b.lineLen = 0
	}
}

// draw redraws the line unless it was drawn less than throttle ago.
func (b *Bar) draw(force bool) {
	now := b.now()
	if !force && b.lineLen > 0 && now.Sub(b.drawn) < throttle {
		return
	}
	b.drawn = now
	line := b.line(now)
	pad := ""
	if n := len([]rune(line)); n < b.lineLen {
		pad = strings.Repeat(" ", b.lineLen-n)
	}
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
	b.lineLen = max(len([]rune(line)), b.lineLen)
}

// line is the text of the bar at now.
func (b *Bar) line(now time.Time) string {
	el := now.Sub(b.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(b.n) / s
	}
	var sb strings.Builder
	sb.WriteString(b.desc)
	if b.max > 0 {
		frac := min(float64(b.n)/float64(b.max), 1)
		full := int(frac * width)
		fmt.Fprintf(&sb, " %3d%% |%s%s| (%s/%s, %s/s)", int(frac*100),
			strings.Repeat("█", full), strings.Repeat(" ", width-full), Bytes(b.n), Bytes(b.max), Bytes(int64(rate)))
		if rate > 0 && b.n < b.max {
			left := time.Duration(float64(b.max-b.n) / rate * float64(time.Second))
			fmt.Fprintf(&sb, " [%s:%s]", el.Round(time.Second), left.Round(time.Second))
		}
	} else {
		fmt.Fprintf(&sb, " (%s, %s/s)", Bytes(b.n), Bytes(int64(rate)))
	}
	return sb.String()
}

// Bytes is n in B, kB, MB, GB, TB (powers of 1000, as the bar it replaces).
func Bytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGT"[exp])
}
