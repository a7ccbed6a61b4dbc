// Package progress draws tether cp's progress bar on a terminal — bytes
// done of a total that may still grow, the rate and the time left — with
// jedib0t/go-pretty's progress writer. That library was chosen over
// schollz/progressbar, which imports net/http (crypto/tls and HTTP/2's
// tables, initialised by every tether process at start-up, bar or no bar),
// and over vbauerster/mpb and cheggaaa/pb, whose dependencies compile
// regular expressions or probe the terminal at start-up (#18).
package progress

import (
	"io"
	"sync"
	"time"

	"github.com/jedib0t/go-pretty/v6/progress"
)

// updateEvery is how often the bar is redrawn.
const updateEvery = 100 * time.Millisecond

// Bar is a progress line. Its methods may be called from many goroutines.
type Bar struct {
	pw       progress.Writer
	tr       *progress.Tracker
	rendered chan struct{}
	once     sync.Once
}

// New starts a bar on w (a terminal) that describes itself as desc.
func New(w io.Writer, desc string) *Bar {
	pw := progress.NewWriter()
	pw.SetOutputWriter(w)
	pw.SetUpdateFrequency(updateEvery)
	pw.SetAutoStop(false)
	pw.SetTrackerLength(20)
	pw.SetTrackerPosition(progress.PositionRight) // "copying 40% [###...]": the words first, as scp
	pw.SetMessageLength(len(desc))
	st := pw.Style()
	st.Visibility.ETA = true
	st.Visibility.Speed = true
	st.Visibility.Time = true
	st.Visibility.Value = true
	st.Visibility.Percentage = true
	st.Options.TimeInProgressPrecision = time.Second
	st.Options.TimeDonePrecision = time.Second
	b := &Bar{pw: pw, tr: &progress.Tracker{Message: desc, Units: progress.UnitsBytes}, rendered: make(chan struct{})}
	pw.AppendTracker(b.tr)
	go func() {
		defer close(b.rendered)
		pw.Render()
	}()
	return b
}

// SetMax sets the total the bar counts up to.
func (b *Bar) SetMax(max int64) { b.tr.UpdateTotal(max) }

// Add counts n more bytes done.
func (b *Bar) Add(n int64) { b.tr.Increment(n) }

// Println prints a line above the bar.
func (b *Bar) Println(line string) { b.pw.Log("%s", line) }

// Finish draws the last state and stops the bar; lines given to Println
// are out by then.
func (b *Bar) Finish() {
	b.once.Do(func() {
		b.tr.MarkAsDone()
		for !b.pw.IsRenderInProgress() {
			select {
			case <-b.rendered:
				return
			default:
				time.Sleep(time.Millisecond)
			}
		}
		b.pw.Stop()
		<-b.rendered
	})
}
