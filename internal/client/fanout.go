package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tether-sh/tether/internal/wire"
)

// DefaultThrottle is how many targets a fan-out works on at once when
// --throttle is not given.
const DefaultThrottle = 32

// Each calls fn(i) for every i in [0, n), at most throttle at once (≤ 0:
// DefaultThrottle), and returns when all have returned. It is the one
// fan-out every multi-target command goes through, so that --throttle
// means the same everywhere.
func Each(n, throttle int, fn func(i int)) {
	if throttle <= 0 {
		throttle = DefaultThrottle
	}
	sem := make(chan struct{}, throttle)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// FanOut runs one command on many targets, at most Throttle at once, over
// a few SSH connections per host (Pool).
type FanOut struct {
	Dialer   *Dialer
	Throttle int // default DefaultThrottle
	Stdout   io.Writer
	Stderr   io.Writer
	JSON     bool
	// Fold buffers each target's stdout and stderr into its TargetResult
	// instead of streaming them (for invoke --fold).
	Fold     bool
	Progress io.Writer // live progress line (a terminal), or nil
	Stdin    io.Reader // forwarded only when there is a single target
	// StdinData, when not nil, is the stdin of every target (spooled
	// once by the caller); it takes precedence over Stdin.
	StdinData []byte
	// ReconnectTimeout as in RunSpec.
	ReconnectTimeout time.Duration
	Notify           io.Writer
	OnStart          func(t Target, session string, temporary bool)
}

// TargetResult is the outcome on one target. Err is set when the command
// could not run (or its transport was lost for good); ExitCode is then 255.
// Stdout and Stderr hold the output when FanOut.Fold is set.
type TargetResult struct {
	Target   Target
	ExitCode int
	Err      error
	Duration time.Duration
	Result   Result
	Stdout   []byte
	Stderr   []byte
}

// Invoke runs req on every target and returns their results in order.
func (f *FanOut) Invoke(ctx context.Context, targets []Target, req wire.Request, signals <-chan string) []TargetResult {
	single := len(targets) == 1 && !f.JSON && !f.Fold
	mu := new(sync.Mutex)
	results := make([]TargetResult, len(targets))
	var done, failed atomic.Int64
	prog := f.startProgress(mu, len(targets), &done, &failed)
	out := &lockedWriter{mu: mu, w: f.Stdout, progress: prog}
	errw := &lockedWriter{mu: mu, w: f.Stderr, progress: prog} // one lock: lines never interleave

	conns := NewPool(f.Dialer)
	defer conns.Close()

	// Each run gets its own copy of every signal.
	var subsMu sync.Mutex
	var subs []chan string
	if signals != nil {
		go func() {
			for s := range signals {
				subsMu.Lock()
				for _, c := range subs {
					select {
					case c <- s:
					default:
					}
				}
				subsMu.Unlock()
			}
		}()
	}

	Each(len(targets), f.Throttle, func(i int) {
		t := targets[i]
		sig := make(chan string, 4)
		subsMu.Lock()
		subs = append(subs, sig)
		subsMu.Unlock()
		start := time.Now()
		var stdout, stderr io.Writer
		var flush func()
		var bufOut, bufErr *bytes.Buffer
		switch {
		case f.Fold:
			bufOut, bufErr = new(bytes.Buffer), new(bytes.Buffer)
			stdout, stderr, flush = bufOut, bufErr, func() {}
		case single:
			stdout, stderr, flush = f.Stdout, f.Stderr, func() {}
		case f.JSON:
			jo := &jsonLines{w: out, target: t.String(), stream: "stdout"}
			je := &jsonLines{w: out, target: t.String(), stream: "stderr"}
			stdout, stderr, flush = jo, je, func() { jo.flush(); je.flush() }
		default:
			po := &prefixLines{w: out, prefix: t.String() + ": "}
			pe := &prefixLines{w: errw, prefix: t.String() + ": "}
			stdout, stderr, flush = po, pe, func() { po.flush(); pe.flush() }
		}
		spec := RunSpec{
			Target: t, Request: req, Stdout: stdout, Stderr: stderr,
			ReconnectTimeout: f.ReconnectTimeout, Notify: f.Notify, Signals: sig,
		}
		switch {
		case f.StdinData != nil:
			spec.Stdin = bytes.NewReader(f.StdinData)
		case single:
			spec.Stdin = f.Stdin
		}
		if f.OnStart != nil {
			spec.OnStart = func(s string, temp bool) { f.OnStart(t, s, temp) }
		}
		var res Result
		conn, release, err := conns.Acquire(ctx, t)
		if err == nil {
			res, err = f.Dialer.Run(ctx, conn, spec)
			release()
		}
		flush()
		tr := TargetResult{Target: t, ExitCode: res.ExitCode, Err: err, Duration: time.Since(start), Result: res}
		if bufOut != nil {
			tr.Stdout, tr.Stderr = bufOut.Bytes(), bufErr.Bytes()
		}
		if err != nil {
			tr.ExitCode = 255
		}
		if tr.ExitCode != 0 {
			failed.Add(1)
		}
		results[i] = tr
		done.Add(1)
		if f.JSON {
			rec := map[string]any{"target": t.String(), "exit_code": tr.ExitCode, "duration_ms": tr.Duration.Milliseconds()}
			if err != nil {
				rec["error"] = err.Error()
			} else {
				rec["error"] = nil
			}
			if res.Session != "" && (t.Session != "" || req.Detach) {
				rec["session"] = t.WithSession(res.Session).String()
			}
			if res.Dropped > 0 {
				rec["dropped_bytes"] = res.Dropped
			}
			out.writeJSON(rec)
		}
	})
	prog.stop()
	return results
}

// progress is the live line "[done/total] N failed, elapsed" on a
// terminal. It shares the output's lock: every output line clears it
// first and redraws it after, so it never mixes into a line.
type progress struct {
	mu     *sync.Mutex
	w      io.Writer
	total  int
	start  time.Time
	done   *atomic.Int64
	failed *atomic.Int64
	drawn  bool
	ended  bool // stopped: never drawn again
	quit   chan struct{}
	exited chan struct{}
}

// startProgress draws the progress line on f.Progress until stop; it is
// nil (and every method a no-op) without a terminal or with one target.
func (f *FanOut) startProgress(mu *sync.Mutex, total int, done, failed *atomic.Int64) *progress {
	if f.Progress == nil || total < 2 {
		return nil
	}
	p := &progress{mu: mu, w: f.Progress, total: total, start: time.Now(), done: done, failed: failed,
		quit: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			p.mu.Lock()
			p.drawLocked()
			p.mu.Unlock()
			select {
			case <-p.quit:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *progress) drawLocked() {
	if p.ended {
		return
	}
	fmt.Fprintf(p.w, "\r\033[K[%d/%d] %d failed, %.1fs", p.done.Load(), p.total, p.failed.Load(), time.Since(p.start).Seconds())
	p.drawn = true
}

func (p *progress) clearLocked() {
	if p.drawn {
		io.WriteString(p.w, "\r\033[K")
		p.drawn = false
	}
}

// stop erases the line for good.
func (p *progress) stop() {
	if p == nil {
		return
	}
	close(p.quit)
	<-p.exited
	p.mu.Lock()
	p.clearLocked()
	p.ended = true
	p.mu.Unlock()
}

// Pool shares SSH connections per host among the targets on it, so a
// command over 500 sessions on 5 hosts makes a handful of handshakes, not
// 500. A host's agent caps the channels of one connection
// (MaxSessionsPerConnection, advertised at the handshake): the pool opens
// another connection to the host when every one it has is full and more
// targets wait, so a fan-out keeps its throttle.
type Pool struct {
	d     *Dialer
	mu    sync.Mutex
	hosts map[string]*poolHost
}

type poolHost struct {
	conns   []*pooled
	dialing int           // dials in flight
	waiting int           // Acquires waiting for a slot
	err     error         // the first dial's failure, when it has no connection
	full    bool          // a later dial failed: make do with the connections there are
	wake    chan struct{} // closed when a slot or a connection may have appeared
}

type pooled struct {
	conn  *Conn
	users int
}

// NewPool makes an empty pool dialing with d.
func NewPool(d *Dialer) *Pool { return &Pool{d: d, hosts: map[string]*poolHost{}} }

// Get returns a connection to t's host, dialing it when there is none. Its
// channels are not reserved: Conn.Open waits for a free one.
func (p *Pool) Get(ctx context.Context, t Target) (*Conn, error) {
	c, release, err := p.Acquire(ctx, t)
	if err != nil {
		return nil, err
	}
	release()
	return c, nil
}

// Acquire returns a connection to t's host with a channel slot reserved for
// the caller until release; it dials another connection when all are full.
func (p *Pool) Acquire(ctx context.Context, t Target) (c *Conn, release func(), err error) {
	key := t.connKey(p.d.DefaultUser)
	p.mu.Lock()
	h := p.hosts[key]
	if h == nil {
		h = &poolHost{wake: make(chan struct{})}
		p.hosts[key] = h
	}
	for {
		live := h.conns[:0]
		for _, pc := range h.conns {
			select {
			case <-pc.conn.Done():
				continue // gone: do not hand it out again
			default:
			}
			live = append(live, pc)
		}
		h.conns = live
		for _, pc := range h.conns {
			if n := pc.conn.MaxChannels(); n == 0 || pc.users < n {
				pc.users++
				p.mu.Unlock()
				var once sync.Once
				return pc.conn, func() {
					once.Do(func() {
						p.mu.Lock()
						pc.users--
						p.wakeLocked(h)
						p.mu.Unlock()
					})
				}, nil
			}
		}
		if len(h.conns) == 0 && h.err != nil {
			err := h.err
			p.mu.Unlock()
			return nil, nil, err
		}
		// Dial when nothing is on its way, or when the dials on their
		// way cannot serve everyone waiting.
		per := 1
		if len(h.conns) > 0 {
			per = max(h.conns[0].conn.MaxChannels(), 1)
		}
		if (h.dialing == 0 && !(h.full && len(h.conns) > 0)) || (!h.full && h.waiting+1 > h.dialing*per && len(h.conns) > 0) {
			h.dialing++
			go p.dial(ctx, t, h)
		}
		wake := h.wake
		h.waiting++
		p.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			p.mu.Lock()
			h.waiting--
			p.mu.Unlock()
			return nil, nil, ctx.Err()
		}
		p.mu.Lock()
		h.waiting--
	}
}

func (p *Pool) dial(ctx context.Context, t Target, h *poolHost) {
	c, err := p.d.Dial(ctx, t)
	p.mu.Lock()
	defer p.mu.Unlock()
	h.dialing--
	switch {
	case err == nil:
		h.conns = append(h.conns, &pooled{conn: c})
		h.err = nil
	case len(h.conns) == 0:
		h.err = err
	default:
		h.full = true
	}
	p.wakeLocked(h)
}

func (p *Pool) wakeLocked(h *poolHost) {
	close(h.wake)
	h.wake = make(chan struct{})
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		for _, pc := range h.conns {
			pc.conn.Close()
		}
	}
}

type lockedWriter struct {
	mu       *sync.Mutex
	w        io.Writer
	progress *progress // cleared before each write and redrawn after, or nil
}

func (l *lockedWriter) write(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.progress != nil {
		l.progress.clearLocked()
		defer l.progress.drawLocked()
	}
	l.w.Write(b)
}

func (l *lockedWriter) writeJSON(v any) {
	b, _ := json.Marshal(v)
	l.write(append(b, '\n'))
}

// prefixLines writes whole lines, each prefixed, to a shared writer.
type prefixLines struct {
	w      *lockedWriter
	prefix string
	buf    []byte
}

func (p *prefixLines) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		line := make([]byte, 0, len(p.prefix)+i+1)
		line = append(append(line, p.prefix...), p.buf[:i+1]...)
		p.w.write(line)
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) == 0 {
		p.buf = nil
	}
	return len(b), nil
}

func (p *prefixLines) flush() {
	if len(p.buf) > 0 {
		p.Write([]byte{'\n'})
	}
}

// jsonLines writes one JSON record per output line.
type jsonLines struct {
	w              *lockedWriter
	target, stream string
	buf            []byte
}

func (j *jsonLines) Write(b []byte) (int, error) {
	j.buf = append(j.buf, b...)
	for {
		i := bytes.IndexByte(j.buf, '\n')
		if i < 0 {
			break
		}
		j.emit(j.buf[:i])
		j.buf = j.buf[i+1:]
	}
	return len(b), nil
}

func (j *jsonLines) emit(line []byte) {
	rec := map[string]any{"target": j.target, "stream": j.stream}
	if utf8.Valid(line) {
		rec["data"] = string(line)
	} else {
		rec["data_base64"] = base64.StdEncoding.EncodeToString(line)
	}
	j.w.writeJSON(rec)
}

func (j *jsonLines) flush() {
	if len(j.buf) > 0 {
		j.emit(j.buf)
		j.buf = nil
	}
}
