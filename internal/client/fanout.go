package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
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
	// Plain runs of named sessions share mux channels (mux.go): under
	// MaxSessionsPerConnection a fan-out then needs no more connections
	// than without it. Runs with stdin, a terminal, a module or --detach,
	// and runs in temporary sessions, keep a channel each.
	conns.mux = f.StdinData == nil && !single && req.TTY == nil && !req.Detach && req.Module == "" &&
		!slices.ContainsFunc(targets, func(t Target) bool { return t.Session == "" })

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

	conns.Each(ctx, targets, f.Throttle, func(i int, conn *Conn, err error) {
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
		if err == nil {
			res, err = f.Dialer.Run(ctx, conn, spec)
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
	kick  chan struct{} // Pool.Each's dispatcher: a slot, a connection or a failure appeared
	// closed: Close ran; a dial still on its way closes its connection
	// (Each may return with a dial it no longer needs in flight).
	closed bool
	// mux: the runs given out go on mux channels where the agent serves
	// them (mux.go), so a connection takes its cap × the channels'
	// sub-streams of them.
	mux bool
}

type poolHost struct {
	key     string
	conns   []*pooled
	dialing int           // dials in flight
	waiting int           // Acquires waiting for a slot
	err     error         // the first dial's failure, when it has no connection
	full    bool          // a later dial failed: make do with the connections there are
	wake    chan struct{} // closed when a slot or a connection may have appeared

	// Pool.Each's targets of this host not yet started, in their order,
	// and the ones started that wait for the first connection's dial.
	queue  []int
	parked []int
}

type pooled struct {
	conn  *Conn
	users int
}

// NewPool makes an empty pool dialing with d.
func NewPool(d *Dialer) *Pool {
	return &Pool{d: d, hosts: map[string]*poolHost{}, kick: make(chan struct{}, 1)}
}

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
			if n := pc.conn.capacity(); n == 0 || pc.users < n {
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
			per = max(h.conns[0].conn.capacity(), 1)
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
	if p.closed {
		if err == nil {
			c.Close()
		}
		return
	}
	switch {
	case err == nil:
		c.muxOn.Store(p.mux)
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
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// hostLocked returns the pool's entry for t's host, making it.
func (p *Pool) hostLocked(t Target) *poolHost {
	key := t.connKey(p.d.DefaultUser)
	h := p.hosts[key]
	if h == nil {
		h = &poolHost{key: key, wake: make(chan struct{})}
		p.hosts[key] = h
	}
	return h
}

// pruneLocked drops h's connections that are gone.
func (h *poolHost) pruneLocked() {
	live := h.conns[:0]
	for _, pc := range h.conns {
		select {
		case <-pc.conn.Done():
			continue
		default:
		}
		live = append(live, pc)
	}
	clear(h.conns[len(live):])
	h.conns = live
}

// freeLocked returns a connection of h with a free channel slot, or nil.
func (h *poolHost) freeLocked() *pooled {
	for _, pc := range h.conns {
		if n := pc.conn.capacity(); n == 0 || pc.users < n {
			return pc
		}
	}
	return nil
}

// perLocked is the channel cap of h's connections once one is up (0: none
// is, so the cap is not known yet; a connection without a cap counts as a
// very large one).
func (h *poolHost) perLocked() int {
	if len(h.conns) == 0 {
		return 0
	}
	if n := h.conns[0].conn.capacity(); n > 0 {
		return n
	}
	return 1 << 30
}

// Each calls fn(i, c, err) for every target, at most throttle (≤ 0:
// DefaultThrottle) at once, with a channel slot of a connection to
// targets[i]'s host reserved for the call (err: the host could not be
// reached). Unlike Each with Acquire inside, a target whose host has every
// slot taken does not hold one of the throttle's places: the place goes to
// the first target, in the given order, whose host has a free slot (so
// targets start in order whenever their hosts have room, and --throttle 1
// runs them one after the other as given). Only when no waiting target can
// start is another connection dialled, for the host with the fewest, as
// many at once as the free places need: a fan-out over H hosts under a cap
// of C channels opens about throttle/C connections spread over the hosts,
// not throttle/C to each host in turn (the targets of a host are often
// listed together). Only one Each may run on a pool at a time.
func (p *Pool) Each(ctx context.Context, targets []Target, throttle int, fn func(i int, c *Conn, err error)) {
	if throttle <= 0 {
		throttle = DefaultThrottle
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var hosts []*poolHost // in the order of their first target
	seen := map[*poolHost]bool{}
	for i, t := range targets {
		h := p.hostLocked(t)
		h.queue = append(h.queue, i)
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	var wg sync.WaitGroup
	defer func() {
		p.mu.Unlock()
		wg.Wait()
		p.mu.Lock()
	}()
	running, left := 0, len(targets) // places taken; targets not yet handed to fn
	start := func(h *poolHost, i int, pc *pooled, err error) {
		running++
		left--
		var c *Conn
		if pc != nil {
			pc.users++
			c = pc.conn
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, c, err)
			p.mu.Lock()
			if pc != nil {
				pc.users--
			}
			running--
			p.wakeLocked(h)
			p.mu.Unlock()
		}()
	}
	for left > 0 {
		// Hosts with nothing left to start drop out of the scans.
		hosts = slices.DeleteFunc(hosts, func(h *poolHost) bool { return len(h.queue) == 0 && len(h.parked) == 0 })
		if err := ctx.Err(); err != nil {
			for _, h := range hosts {
				for _, i := range append(h.parked, h.queue...) {
					start(h, i, nil, err)
				}
				h.queue, h.parked = nil, nil
			}
			return
		}
		for _, h := range hosts {
			h.pruneLocked()
			// Targets parked on a first dial get its connection, or its
			// failure, first: they hold their places already.
			for len(h.parked) > 0 {
				pc := h.freeLocked()
				if pc == nil && (len(h.conns) > 0 || h.dialing > 0 || h.err == nil) {
					break
				}
				i := h.parked[0]
				h.parked = h.parked[1:]
				running-- // start counts it again
				if pc != nil {
					start(h, i, pc, nil)
				} else {
					start(h, i, nil, h.err)
				}
			}
		}
		for running < throttle {
			// The first waiting target, in the given order, that can
			// start now: its host has a free slot, cannot be reached,
			// or needs its first connection (dialled now; the target
			// parks on it, holding its place).
			var best *poolHost
			for _, h := range hosts {
				if len(h.queue) == 0 || (best != nil && h.queue[0] > best.queue[0]) {
					continue
				}
				if h.freeLocked() != nil || (len(h.conns) == 0 && h.dialing == 0) {
					best = h
				}
			}
			if best == nil {
				break
			}
			h := best
			i := h.queue[0]
			h.queue = h.queue[1:]
			switch pc := h.freeLocked(); {
			case pc != nil:
				start(h, i, pc, nil)
			case h.err != nil:
				start(h, i, nil, h.err)
			default:
				running++
				h.parked = append(h.parked, i)
				h.dialing++
				go p.dial(ctx, targets[i], h)
			}
		}
		p.dialMoreLocked(ctx, targets, hosts, throttle-running)
		if left == 0 {
			break
		}
		p.mu.Unlock()
		select {
		case <-p.kick:
		case <-ctx.Done():
		}
		p.mu.Lock()
	}
}

// dialMoreLocked dials more connections when free places remain that no
// waiting target can take, until the dials on their way bring enough
// slots. Hosts are levelled: a host gets another connection only when no
// host that also needs one has fewer (a host whose first dial is on its way
// counts as one, its cap not known yet).
func (p *Pool) dialMoreLocked(ctx context.Context, targets []Target, hosts []*poolHost, free int) {
	for _, h := range hosts {
		if per := h.perLocked(); per > 0 {
			free -= h.dialing * per
		}
	}
	for free > 0 {
		var best *poolHost
		level := -1
		for _, h := range hosts {
			per := h.perLocked()
			if len(h.queue) == 0 || h.full || (per == 0 && h.dialing == 0) || (per > 0 && len(h.queue) <= h.dialing*per) {
				continue // nothing waits, no more dials, or dials enough
			}
			l := len(h.conns) + h.dialing
			if level < 0 || l < level {
				level, best = l, nil
			}
			if l == level && best == nil && per > 0 {
				best = h
			}
		}
		if best == nil {
			return
		}
		best.dialing++
		go p.dial(ctx, targets[best.queue[0]], best)
		free -= best.perLocked()
	}
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
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
