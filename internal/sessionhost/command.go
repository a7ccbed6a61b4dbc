package sessionhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/wire"
)

// StdinWindow is how many stdin bytes a client may send ahead of what the
// command has consumed. The host buffers at most this much per command.
const StdinWindow = 1 << 20

// stdinAckBytes is how much stdin the command may consume before the
// client is told while more is buffered: a quarter of the window keeps the
// client sending.
const stdinAckBytes = StdinWindow / 4

// command is one command running (or run) in the session.
type command struct {
	id       uint32
	text     string
	started  time.Time
	startSeq uint64
	stdin    *stdinPipe
	tty      *wire.TTY // run on a pseudo-terminal (pty.go)
	done     chan struct{}
	exitSeq  uint64 // seq of the exit record, set when done
	// finishing: the command has ended and its exit record is being
	// written; the session is about to be free.
	finishing bool
	exitCode  int
	// runCtx is what the runspace's Run gets; interrupt cancels it, so
	// that a Ctrl-C that comes after the command is the session's but
	// before Run has started its job stops it at its start (Run takes a
	// cancelled context as an interrupt) instead of being lost.
	runCtx    context.Context
	interrupt context.CancelFunc
}

// startCommand runs text (or argv) in the runspace; h.mu must be held.
func (h *Host) startCommandLocked(req *wire.Request) (*command, error) {
	if h.running != nil {
		return nil, h.busyRunningLocked()
	}
	script := req.Script()
	if len(req.Argv) > 0 {
		script = argvScript(req.Argv)
	}
	h.nextCmd++
	c := &command{
		id:      h.nextCmd,
		text:    describe(req),
		started: h.now(),
		tty:     req.TTY,
		done:    make(chan struct{}),
	}
	c.runCtx, c.interrupt = context.WithCancel(context.Background())
	if req.Stdin {
		c.stdin = newStdinPipe()
	}
	seq, err := h.j.Append(context.Background(), journal.KindStart, c.id, []byte(c.text))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	c.startSeq = seq
	h.running = c
	h.poke()
	select {
	case h.runs <- runJob{c, script}:
	default: // the runner is still returning from the last command
		go h.runCommand(c, script)
	}
	return c, nil
}

// runJob is a command handed to the runner.
type runJob struct {
	c      *command
	script string
}

// runner runs the session's commands, one at a time as a session does, on
// one long-lived goroutine: the builtin interpreter's calls go deep, and a
// goroutine per command grew its stack from the start each time, copying
// it at every doubling (12 % of a session host's CPU per fresh `invoke
// true`, #18). This one keeps what it grew until a GC shrinks it.
func (h *Host) runner() {
	for {
		select {
		case j := <-h.runs:
			h.runCommand(j.c, j.script)
		case <-h.closed:
			return
		}
	}
}

// busyRunningLocked is the refusal of a command while another one runs; it
// says how to stop that one.
func (h *Host) busyRunningLocked() error {
	return wire.Errorf(wire.CodeBusy, "session %s is busy running %q since %s; wait for it, interrupt it (tether interrupt %%HOST%%/%s), or use another session",
		h.opts.Name, h.running.text, h.running.started.Format(time.RFC3339), h.opts.Name)
}

func describe(req *wire.Request) string {
	if len(req.Argv) > 0 {
		return argvScript(req.Argv)
	}
	return req.Script()
}

func (h *Host) runCommand(c *command, script string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer c.interrupt() // frees runCtx
	go func() {
		select {
		case <-h.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	stopRunCtx := context.AfterFunc(ctx, c.interrupt)
	defer stopRunCtx()
	var stdin io.Reader // nil: empty, as </dev/null
	if c.stdin != nil {
		stdin = c.stdin
	}
	sink := newOutputSink(ctx, h.j, c.id)
	out := sink.writer(journal.KindStdout)
	errw := sink.writer(journal.KindStderr)
	streams := runspace.Streams{Stdin: stdin, Stdout: out, Stderr: errw}
	var endTTY func()
	if c.tty != nil {
		streams, endTTY = h.startTTY(ctx, c, streams)
		// On the terminal Ctrl-C reaches only the foreground program;
		// the runspace stops the rest of the line as bash does.
		streams.JobControl = endTTY != nil
	}
	h.mu.Lock()
	h.countersBefore = nil // taken at the command's first process (afterStart)
	h.mu.Unlock()
	// Builtins of the builtin interpreter run in this process (memwatch.go);
	// bash's run in bash, inside the session's limits.
	stopWatch := func() bool { return false }
	if h.rs.Kind() == runspace.KindBuiltin {
		stopWatch = h.watchMemory()
	} else {
		// bash forks the command's processes itself: the counters are
		// the command's from its start, and the fallback's monitor scans
		// from now (an idle bash alone does not keep it scanning).
		h.takeCounters()
		if h.group != nil {
			h.group.Wake()
		}
	}
	h.writeNotices(errw)
	code, err := h.rs.Run(c.runCtx, script, streams)
	hostMem := stopWatch()
	h.writeNotices(errw)
	msg := ""
	if err != nil {
		msg = err.Error()
		if code == 0 {
			code = 1
		}
		h.log.Warn("command failed inside the session host", "err", err)
	}
	h.mu.Lock()
	before := h.countersBefore
	h.mu.Unlock()
	// A command that started no process can have hit no process limit,
	// nor a memory limit but the session host's own (limitStops skips
	// reading the counters for it).
	if why := h.limitStops(before, hostMem); why != "" {
		errw.Write([]byte(why + "\n"))
		msg = why
	}
	if c.stdin != nil {
		c.stdin.closeRead()
	}
	if endTTY != nil {
		endTTY()
	}
	if err := sink.wait(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, journal.ErrClosed) {
		h.log.Warn("cannot journal output", "err", err)
	}
	h.mu.Lock()
	c.finishing = true // a new command waits for the exit record (opRun)
	h.mu.Unlock()
	seq, jerr := h.j.Append(context.Background(), journal.KindExit, c.id, wire.EncodeExit(code, msg))
	if jerr != nil {
		h.log.Warn("cannot journal exit", "err", jerr)
	}
	h.mu.Lock()
	c.exitSeq, c.exitCode = seq, code
	h.running = nil
	h.lastCmd = c
	h.idleSince = h.now()
	h.mu.Unlock()
	h.poke()
	close(c.done)
}

// journalWriter turns a command's output stream into journal records:
// through its sink (outsink.go) if it has one, else one Append per chunk.
type journalWriter struct {
	ctx  context.Context
	j    *journal.Journal
	kind journal.Kind
	cmd  uint32
	sink *outputSink

	// WriteFrom's buffer while the sink has writes waiting; scratchMu
	// keeps it to one copier at a time (a builtin session's `a & b`
	// gives two programs' copiers the same writer).
	scratchMu sync.Mutex
	scratch   []byte
}

// WriteFrom is runspace.PipeWriter's: a pipe's bulk output is read into
// the journal's memory.
func (w *journalWriter) WriteFrom(read func(p []byte) int) (int, error) {
	if w.sink != nil {
		return w.sink.writeFrom(w, read)
	}
	_, n, err := w.j.AppendFrom(w.ctx, w.kind, w.cmd, wire.MaxChunk, read)
	return n, err
}

func (w *journalWriter) Write(p []byte) (int, error) {
	if w.sink != nil {
		return w.sink.write(w.kind, p)
	}
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > wire.MaxChunk {
			chunk = chunk[:wire.MaxChunk]
		}
		if _, err := w.j.Append(w.ctx, w.kind, w.cmd, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// stdinPipe buffers the client's stdin for the command, with offsets so that
// a client resuming after a cut resends exactly what is missing.
type stdinPipe struct {
	mu        sync.Mutex
	cond      *sync.Cond
	buf       []byte
	received  uint64 // bytes accepted from the client, the next expected offset
	consumed  uint64 // bytes read by the command
	eof       bool
	arr       []byte // buf's array, reused: bytes are moved to its front, not appended to a new one
	closed    bool
	notify    func(consumed uint64) // tells the attached client, may be nil
	notifyTok int                   // identifies the attachment that set notify
	notified  uint64                // consumed as last sent to notify
}

func newStdinPipe() *stdinPipe {
	p := &stdinPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// write accepts data sent at offset; bytes already received are skipped.
func (p *stdinPipe) write(off uint64, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if off > p.received {
		return fmt.Errorf("stdin: data at offset %d, expected %d", off, p.received)
	}
	skip := p.received - off
	if skip >= uint64(len(data)) {
		return nil
	}
	data = data[skip:]
	if len(p.buf)+len(data) > StdinWindow+wire.MaxChunk {
		return fmt.Errorf("stdin: client overran the %d-byte window", StdinWindow)
	}
	if !p.closed {
		p.appendLocked(data)
	}
	p.received += uint64(len(data))
	p.cond.Broadcast()
	return nil
}

// appendLocked adds data to buf. buf is cut at the front by Read and grown
// at the back here; append alone would make a new array (and copy up to
// StdinWindow) every few frames of bulk stdin, most of the session host's
// allocations in #18's profile. So the kept bytes move to the front of
// arr, which grows (to twice what is needed) only when they do not fit.
func (p *stdinPipe) appendLocked(data []byte) {
	if cap(p.buf)-len(p.buf) >= len(data) {
		p.buf = append(p.buf, data...)
		return
	}
	need := len(p.buf) + len(data)
	if cap(p.arr) < need {
		p.arr = make([]byte, 0, min(2*need, StdinWindow+2*wire.MaxChunk))
	}
	n := copy(p.arr[:cap(p.arr)], p.buf)
	p.buf = append(p.arr[:n], data...)
}

func (p *stdinPipe) setEOF(off uint64) {
	p.mu.Lock()
	if off == p.received {
		p.eof = true
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *stdinPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	for len(p.buf) == 0 && !p.eof && !p.closed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		p.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = p.arr[:0]
	}
	p.consumed += uint64(n)
	consumed, notify := p.consumed, p.notify
	// Acks go when the command has caught up or every stdinAckBytes, not
	// per Read: the command reads 32 KiB at a time, and each ack is a
	// frame through host, agent and client (#18).
	if notify != nil && (len(p.buf) == 0 || consumed-p.notified >= stdinAckBytes) {
		p.notified = consumed
	} else {
		notify = nil
	}
	p.mu.Unlock()
	if notify != nil {
		notify(consumed)
	}
	return n, nil
}

// closeRead ends the command's side: later data is accepted and discarded.
func (p *stdinPipe) closeRead() {
	p.mu.Lock()
	p.closed = true
	p.buf, p.arr = nil, nil
	p.cond.Broadcast()
	notify := p.notify
	p.consumed = p.received
	consumed := p.consumed
	p.mu.Unlock()
	if notify != nil {
		notify(consumed)
	}
}

// setNotify makes f the receiver of consumption updates (the attached
// client) and returns a token for clearNotify. It reports the current
// consumed offset so the new client can catch up at once: acks sent on a
// connection that broke were lost.
func (p *stdinPipe) setNotify(f func(uint64)) (token int, consumed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = f
	p.notifyTok++
	p.notified = p.consumed
	return p.notifyTok, p.consumed
}

// clearNotify removes the receiver set with token, unless a newer
// attachment has replaced it since.
func (p *stdinPipe) clearNotify(token int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notifyTok == token {
		p.notify = nil
	}
}
