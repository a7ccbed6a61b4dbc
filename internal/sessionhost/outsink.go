package sessionhost

import (
	"context"
	"sync"
	"time"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/wire"
)

// outputSink journals a command's stdout and stderr in the background, so
// that the goroutine reading the command's pipe goes on reading while a
// record is written. What arrives meanwhile is coalesced: a program writing
// 8 KiB at a time becomes records of up to wire.MaxChunk instead of one
// record (a write, a frame) per 8 KiB. Writes of both streams are kept in
// the order they were made. At most sinkMaxPending bytes wait; beyond that
// Write blocks, so a full journal in Block mode still stops the command.
type outputSink struct {
	ctx context.Context
	j   *journal.Journal
	cmd uint32

	mu      sync.Mutex
	space   sync.Cond // pending shrank, or err was set
	idle    sync.Cond // the flusher stopped
	pending []sinkRun // written, not yet journalled, in order
	bytes   int       // data bytes in pending
	spare   []sinkRun
	running bool // a flusher goroutine is appending
	err     error
}

// sinkRun is a run of consecutive writes to one stream.
type sinkRun struct {
	kind journal.Kind
	data []byte
}

// sinkMaxPending bounds the bytes waiting to be journalled.
const sinkMaxPending = 2 * wire.MaxChunk

// After journalling less than sinkSmallRound, the flusher pauses for
// sinkPause before it looks for more: a program streaming output in small
// writes fills the next round meanwhile, while the first write after a
// quiet spell is journalled at once. (A sub-millisecond sleep takes about a
// millisecond in Go; 2 × MaxChunk holds that long at over 400 MiB/s, and
// the pipe in front of it buffers more.)
const (
	sinkSmallRound = 64 << 10
	sinkPause      = 500 * time.Microsecond
)

// A write of at least sinkDirect bytes with nothing pending is journalled
// straight from the writer's buffer (writeDirect).
const sinkDirect = 64 << 10

func newOutputSink(ctx context.Context, j *journal.Journal, cmd uint32) *outputSink {
	s := &outputSink{ctx: ctx, j: j, cmd: cmd}
	s.space.L = &s.mu
	s.idle.L = &s.mu
	return s
}

// writer returns the io.Writer of one stream.
func (s *outputSink) writer(kind journal.Kind) *journalWriter {
	return &journalWriter{ctx: s.ctx, j: s.j, kind: kind, cmd: s.cmd, sink: s}
}

func (s *outputSink) write(kind journal.Kind, p []byte) (int, error) {
	s.mu.Lock()
	if len(p) >= sinkDirect && !s.running && s.err == nil {
		return s.writeDirect(kind, p) // unlocks
	}
	defer s.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for s.err == nil && s.bytes >= sinkMaxPending {
			s.space.Wait()
		}
		if s.err != nil {
			return n, s.err
		}
		k := min(len(p), sinkMaxPending-s.bytes)
		if last := len(s.pending) - 1; last >= 0 && s.pending[last].kind == kind && len(s.pending[last].data)+k <= wire.MaxChunk {
			s.pending[last].data = append(s.pending[last].data, p[:k]...)
		} else {
			var buf []byte
			if len(s.pending) < cap(s.pending) {
				buf = s.pending[:len(s.pending)+1][len(s.pending)].data[:0] // reuse
			}
			s.pending = append(s.pending, sinkRun{kind: kind, data: append(buf, p[:k]...)})
		}
		s.bytes += k
		n += k
		p = p[k:]
		if !s.running {
			s.running = true
			go s.flush()
		}
	}
	return n, nil
}

// writeDirect journals p from the caller's buffer, with s.mu held and
// nothing pending (no flusher running), and unlocks. A large write (a
// grown pipe's read of up to a MiB, see runspace.BulkPipe) coalesces
// nothing more and the pipe buffers the command's output meanwhile, so
// copying it into the sink first only cost a copy of every byte (#18).
// Writes of the other stream meanwhile wait behind it in pending, as they
// would behind a flusher, and a flusher takes them afterwards.
func (s *outputSink) writeDirect(kind journal.Kind, p []byte) (int, error) {
	s.running = true
	s.mu.Unlock()
	n := 0
	var err error
	for len(p) > 0 && err == nil {
		k := min(len(p), wire.MaxChunk)
		if _, err = s.j.Append(s.ctx, kind, s.cmd, p[:k]); err == nil {
			n += k
			p = p[k:]
		}
	}
	s.endDirect(err)
	return n, err
}

// endDirect ends writeDirect's or writeFrom's turn, with its error.
func (s *outputSink) endDirect(err error) {
	s.mu.Lock()
	if err != nil {
		s.err = err
		s.space.Broadcast()
	}
	if len(s.pending) > 0 {
		go s.flush() // running passes to it; it also clears pending after an error
	} else {
		s.running = false
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// writeFrom journals what read puts straight into the journal's tail
// (runspace.PipeWriter): a pipe's bulk output is then not copied at all in
// the session host on its way to the journal. Writes waiting to be
// journalled go first: then read fills w's scratch buffer and that is
// written behind them.
func (s *outputSink) writeFrom(w *journalWriter, read func(p []byte) int) (int, error) {
	s.mu.Lock()
	if s.err != nil || s.running {
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return 0, err
		}
		w.scratchMu.Lock()
		defer w.scratchMu.Unlock()
		if w.scratch == nil {
			w.scratch = make([]byte, wire.MaxChunk)
		}
		n := read(w.scratch)
		if n == 0 {
			return 0, nil
		}
		return s.write(w.kind, w.scratch[:n])
	}
	s.running = true
	s.mu.Unlock()
	_, n, err := s.j.AppendFrom(s.ctx, w.kind, s.cmd, wire.MaxChunk, read)
	s.endDirect(err)
	if n > 0 && n < sinkSmallRound && err == nil {
		// As the flusher does after a small round: the pipe gathers
		// the next record meanwhile. Without the pause a program
		// writing 4 KiB at a time to a reader that keeps up made a
		// record (and frames on to the client) per write.
		time.Sleep(sinkPause)
	}
	return n, err
}

// flush appends pending runs until none are left.
func (s *outputSink) flush() {
	s.mu.Lock()
	for len(s.pending) > 0 && s.err == nil {
		runs := s.pending
		s.pending, s.spare = s.spare[:0], nil
		s.bytes = 0
		s.space.Broadcast()
		s.mu.Unlock()
		var err error
		total := 0
		for _, r := range runs {
			total += len(r.data)
			for d := r.data; len(d) > 0 && err == nil; {
				k := min(len(d), wire.MaxChunk)
				_, err = s.j.Append(s.ctx, r.kind, s.cmd, d[:k])
				d = d[k:]
			}
		}
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.space.Broadcast()
		}
		// Keep the buffers for the next round: a streaming command
		// reuses two sets instead of allocating per record.
		for i := range runs {
			runs[i].data = runs[i].data[:0]
		}
		s.spare = runs[:0]
		if total < sinkSmallRound && s.err == nil {
			s.mu.Unlock()
			time.Sleep(sinkPause)
			s.mu.Lock()
		}
	}
	if s.err != nil {
		clear(s.pending)
		s.pending = s.pending[:0]
		s.bytes = 0
	}
	s.running = false
	s.idle.Broadcast()
	s.mu.Unlock()
}

// wait returns once everything written so far is journalled (or could not
// be), with the first error.
func (s *outputSink) wait() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.running {
		s.idle.Wait()
	}
	return s.err
}
