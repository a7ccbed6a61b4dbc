// Package sessionhost is one session's process: it owns the session's
// runspace (the persistent shell) and output journal, listens on the session's
// local socket, and serves the clients the agent relays to it: run a command,
// stream and resume its output, connect, disconnect, receive, close.
//
// A session host is started by the agent but does not depend on it: it runs
// in its own process session, so it outlives an agent restart or kill -9, and
// a restarted agent finds it again through the socket and meta.json in the
// session directory.
package sessionhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/tether-sh/tether/internal/atomicfile"
	"github.com/tether-sh/tether/internal/clock"
	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/wire"
)

// Options configure a session host.
// The agent sets the first group of fields through Launch (launch.go).
type Options struct {
	Dir       string // the session directory: sock, meta.json, host.log, journal/
	Tombstone string // file to write when the session closes
	Name      string
	User      string
	Temporary bool
	Home      string
	Env       []string
	Limits    wire.Limits
	// LimitsGroup names the cgroup the agent made for the session (empty:
	// enforce limits here with rlimits), LimitsMechanism its kind.
	LimitsGroup     string
	LimitsMechanism string
	// Shell is the runspace (runspace.KindBash, or KindBuiltin: also
	// ""); NoProfile skips bash's login profile.
	Shell     string
	NoProfile bool
	Logger    *slog.Logger
	// Clock drives the idle, run-time and grace timers and the journal's
	// pacing (nil: the real clock); tests pass a clock.Fake. Now, if set
	// without Clock, only replaces the time read.
	Clock clock.Clock
	Now   func() time.Time
	// Ready, if set, is written "ready\n" once the socket listens, then closed.
	Ready io.WriteCloser
}

// Meta is the session's meta.json, read by a restarted agent.
type Meta struct {
	Name      string    `json:"name"`
	User      string    `json:"user"`
	Created   time.Time `json:"created"`
	PID       int       `json:"pid"`
	Temporary bool      `json:"temporary,omitempty"`
	Shell     string    `json:"shell,omitempty"`
}

// Tombstone is what is left of a closed session, so that later use of its
// name says when, by whom and why it was closed.
type Tombstone struct {
	Name     string    `json:"name"`
	ClosedAt time.Time `json:"closed_at"`
	ClosedBy string    `json:"closed_by"`
	Reason   string    `json:"reason"`
}

// SocketPath and friends name the files of a session directory.
func SocketPath(dir string) string { return filepath.Join(dir, "sock") }

// MetaPath is the session's meta.json.
func MetaPath(dir string) string { return filepath.Join(dir, "meta.json") }

// Host is a running session host.
type Host struct {
	opts  Options
	log   *slog.Logger
	clock clock.Clock
	now   func() time.Time

	rs    runspace.Shell
	j     *journal.Journal
	group *limits.Group
	ln    net.Listener

	created time.Time

	mu           sync.Mutex
	limits       wire.Limits
	idleOverride time.Duration // asked for by the client, within MaxIdleTimeout
	disconnected bool
	disconnAt    time.Time
	brokenBy     string      // the client whose transport broke, if that disconnected the session
	att          *attachment // the client following a command or a receive
	hold         *attachment // the client in tether enter (attach.go)
	running      *command
	lastCmd      *command
	nextCmd      uint32
	idleSince    time.Time
	trimmedFor   time.Time // the idleSince of the last idle trim (idlemem.go)
	trimmedAlloc uint64    // heap bytes allocated as of the last trim; timers only
	graceUntil   time.Time // temporary session waiting for its client
	copies       int       // tether cp streams open (sftp.go): not idle
	closing      bool
	closingWhy   string // "closed by BY: REASON", once closing
	watchers     map[net.Conn]struct{}
	pipes        map[net.Conn]struct{} // kept connections waiting for their next request
	// countersBefore are the limit counters when the running command
	// started its first process; nil while it has started none.
	countersBefore *limits.Counters

	closed    chan struct{}
	closeDone chan struct{} // Close has finished removing the session's files
	pokes     chan struct{} // state changed: recompute the next deadline
	runs      chan runJob   // to the runner (command.go), unbuffered
	wg        sync.WaitGroup
}

// tailBytes is the journal's memory bound for a session of shell: in a
// bash session 16 MiB, above a client's acknowledgement lag and a segment,
// so that bulk output a client keeps up with is never written to the
// files (#18). A builtin session keeps the journal's default (8 MiB): its
// host runs builtins under a Go memory limit (memwatch.go) that a larger
// tail kept the collector running against (a fifth of its CPU).
func tailBytes(shell string) int64 {
	if shell == runspace.KindBash {
		return 16 << 20
	}
	return 0
}

// Run starts the session host and serves until the session is closed.
func Run(ctx context.Context, opts Options) error {
	if opts.Shell == runspace.KindBash {
		// bash does a bash session's work; its host passes bytes on. With
		// one P its goroutines hand off without waking idle threads: per
		// command ~35 % less CPU and half the context switches
		// (BenchmarkRunTrue), a steadier latency, no loss of throughput
		// measured (bench throughput, 128 MiB).
		runtime.GOMAXPROCS(1)
	}
	h, err := start(opts)
	if err != nil {
		if opts.Ready != nil {
			fmt.Fprintf(opts.Ready, "error %v\n", err)
			opts.Ready.Close()
		}
		return err
	}
	if opts.Ready != nil {
		io.WriteString(opts.Ready, "ready\n")
		opts.Ready.Close()
	}
	return h.serve(ctx)
}

func start(opts Options) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	clk := clock.Or(opts.Clock)
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	h := &Host{
		opts:      opts,
		log:       opts.Logger.With("session", opts.Name, "user", opts.User),
		clock:     clk,
		now:       opts.Now,
		limits:    opts.Limits,
		closed:    make(chan struct{}),
		closeDone: make(chan struct{}),
		pokes:     make(chan struct{}, 1),
		runs:      make(chan runJob),
		watchers:  map[net.Conn]struct{}{},
		pipes:     map[net.Conn]struct{}{},
	}
	h.created = h.now()
	h.idleSince = h.created
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("session %s: %w", opts.Name, err)
	}
	// A tombstone of an earlier session of this name goes: the name lives
	// again. The host removes it, as the user; the agent never touches files
	// in the user's .closed.
	if opts.Tombstone != "" {
		if err := os.Remove(opts.Tombstone); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("session %s: old tombstone: %w", opts.Name, err)
		}
	}
	mode, err := journal.ParseMode(orDefault(opts.Limits.BufferingMode, "block"))
	if err != nil {
		return nil, err
	}
	if err := h.openLimits(); err != nil {
		return nil, err
	}
	// The shell starts while the journal opens: a bash session's bash is
	// born in the commands' cgroup, and on cgroup v1 that first move waits
	// for an RCU grace period (~10 ms), which this overlaps.
	type shellResult struct {
		rs  runspace.Shell
		err error
	}
	shellc := make(chan shellResult, 1)
	go func() {
		rs, err := h.newShell()
		shellc <- shellResult{rs, err}
	}()
	h.j, err = journal.Open(journal.Options{
		Dir:       filepath.Join(opts.Dir, "journal"),
		MaxBytes:  orDefaultInt(opts.Limits.JournalBytes, 64<<20),
		Mode:      mode,
		Clock:     opts.Clock,
		TailBytes: tailBytes(opts.Shell),
	})
	sr := <-shellc
	if err != nil {
		if sr.rs != nil {
			sr.rs.Close()
		}
		return nil, fmt.Errorf("session %s: journal: %w", opts.Name, err)
	}
	if sr.err != nil {
		h.j.Close()
		return nil, fmt.Errorf("session %s: runspace: %w", opts.Name, sr.err)
	}
	h.rs = sr.rs
	// The idle clock starts when the session can serve: a login profile
	// slower than IdleTimeout (or a loaded machine) must not close the
	// session before its creator holds it.
	h.idleSince = h.now()
	sock := SocketPath(opts.Dir)
	os.Remove(sock)
	h.ln, err = net.Listen("unix", sock)
	if err != nil {
		h.j.Close()
		return nil, fmt.Errorf("session %s: listen: %w", opts.Name, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		h.ln.Close()
		h.j.Close()
		return nil, err
	}
	meta := Meta{Name: opts.Name, User: opts.User, Created: h.created, PID: os.Getpid(), Temporary: opts.Temporary, Shell: h.rs.Kind()}
	if err := writeJSONFile(MetaPath(opts.Dir), meta); err != nil {
		h.ln.Close()
		h.j.Close()
		return nil, err
	}
	return h, nil
}

func (h *Host) serve(ctx context.Context) error {
	h.wg.Add(1)
	go h.timers(ctx)
	go h.runner()
	go func() {
		select {
		case <-ctx.Done():
			h.Close("agent", "session host stopped")
		case <-h.closed:
		}
	}()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			select {
			case <-h.closed:
				<-h.closeDone
				h.wg.Wait()
				return nil
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			h.Close("session host", fmt.Sprintf("accept: %v", err))
			<-h.closeDone
			h.wg.Wait()
			return err
		}
		if err := checkPeer(c); err != nil {
			h.log.Warn("refused local connection", "err", err)
			c.Close()
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.handle(c)
		}()
	}
}

// closingErrLocked is the refusal of every request once Close has begun
// (it may wait seconds for a command to stop): the reason, not a Busy.
func (h *Host) closingErrLocked() error {
	return wire.Errorf(wire.CodeClosed, "session %s is closing (%s)", h.opts.Name, h.closingWhy)
}

// Close ends the session: interrupts a running command, leaves a tombstone,
// removes the journal and session directory. Safe to call more than once.
func (h *Host) Close(by, reason string) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	h.closing = true
	h.closingWhy = "closed by " + by + ": " + reason
	running := h.running
	att := h.att
	watchers := h.watchers
	h.watchers = nil
	pipes := h.pipes
	h.pipes = nil
	h.mu.Unlock()

	h.log.Info("closing session", "by", by, "reason", reason)
	if h.opts.Tombstone != "" {
		ts := Tombstone{Name: h.opts.Name, ClosedAt: h.now(), ClosedBy: by, Reason: reason}
		if err := writeJSONFile(h.opts.Tombstone, ts); err != nil {
			h.log.Warn("cannot write tombstone", "err", err)
		}
		pruneTombstones(filepath.Dir(h.opts.Tombstone), MaxTombstones)
	}
	if att != nil {
		att.kick("session closed by " + by + ": " + reason)
	}
	if running != nil {
		h.rs.Interrupt()
		select {
		case <-running.done:
		case <-time.After(5 * time.Second):
			h.log.Warn("command did not stop on interrupt", "command", running.text)
		}
	}
	// The shell (bash and its jobs) ends with the session.
	h.rs.Close()
	if h.group != nil {
		// No program starts any more: the thread that started them
		// leaves the commands' group, which the agent empties next.
		h.group.StopStarting()
	}
	close(h.closed)
	h.ln.Close()
	for c := range pipes {
		c.Close()
	}
	h.j.Remove()
	if h.group != nil && h.group.Mechanism() == limits.Rlimit {
		h.group.Destroy()
	}
	// Empty the session directory before the watchers hear of the end: the
	// agent then removes the directory itself from its root-owned parent,
	// which the user (and so this host) cannot write.
	os.RemoveAll(h.opts.Dir)
	for c := range watchers {
		c.Close()
	}
	close(h.closeDone)
}

// Done is closed when the session has been closed.
func (h *Host) Done() <-chan struct{} { return h.closed }

// timers closes the session when a limit expires. It sleeps until the
// next deadline and is poked on every state change, so an idle session
// costs no wakeups (but one, to trim its memory after work: idlemem.go).
func (h *Host) timers(ctx context.Context) {
	defer h.wg.Done()
	t := h.clock.NewTimer(time.Hour)
	defer t.Stop()
	h.mu.Lock()
	h.trimmedFor = h.idleSince // start-up is not worth a trim
	h.mu.Unlock()
	h.trimmedAlloc = heapAllocated()
	for {
		if by, reason := h.expired(); by != "" {
			go h.Close(by, reason)
			return
		}
		h.maybeTrim()
		h.mu.Lock()
		next := h.nextDeadlineLocked()
		if at, ok := h.trimAtLocked(); ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
		h.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			// A little past the deadline, so expired() sees it passed.
			wait = max(next.Sub(h.now())+5*time.Millisecond, time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-h.closed:
			return
		case <-ctx.Done():
			return
		case <-h.pokes:
		case <-t.C():
		}
	}
}

// poke wakes the timers after a state change.
func (h *Host) poke() {
	select {
	case h.pokes <- struct{}{}:
	default:
	}
}

// nextDeadlineLocked is the earliest moment a limit could close the session
// in its current state, or zero.
func (h *Host) nextDeadlineLocked() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if max := time.Duration(h.limits.MaxRunTime); max > 0 {
		earlier(h.created.Add(max))
	}
	if !h.graceUntil.IsZero() && h.att == nil {
		earlier(h.graceUntil)
	}
	if idle := h.idleTimeoutLocked(); idle > 0 {
		if since, ok := h.idleClockLocked(); ok {
			earlier(since.Add(idle))
		}
	}
	return next
}

// expired says whether a limit closes the session now.
func (h *Host) expired() (by, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if max := time.Duration(h.limits.MaxRunTime); max > 0 && now.Sub(h.created) >= max {
		return "MaxShellRunTime", fmt.Sprintf("open for longer than MaxShellRunTime (%s)", max)
	}
	if !h.graceUntil.IsZero() && h.att == nil && now.After(h.graceUntil) {
		return "client", "temporary session's client did not come back"
	}
	if idle := h.idleTimeoutLocked(); idle > 0 {
		if since, ok := h.idleClockLocked(); ok && now.Sub(since) >= idle {
			return "IdleTimeout", fmt.Sprintf("idle for longer than IdleTimeout (%s)", idle)
		}
	}
	return "", ""
}

// idleClockLocked returns since when the idle clock runs: no client attached
// and no command running, or disconnected (PowerShell's clock runs while
// disconnected even with a command running).
func (h *Host) idleClockLocked() (time.Time, bool) {
	if h.disconnected && h.att == nil && h.copies == 0 {
		if h.disconnAt.After(h.idleSince) {
			return h.disconnAt, true
		}
		return h.idleSince, true
	}
	if h.att == nil && h.running == nil && h.copies == 0 {
		return h.idleSince, true
	}
	return time.Time{}, false
}

func (h *Host) idleTimeoutLocked() time.Duration {
	if h.idleOverride > 0 {
		return h.idleOverride
	}
	return time.Duration(h.limits.IdleTimeout)
}

// Info describes the session now.
func (h *Host) Info() wire.SessionInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.infoLocked()
}

func (h *Host) infoLocked() wire.SessionInfo {
	si := wire.SessionInfo{
		Name:      h.opts.Name,
		User:      h.opts.User,
		State:     wire.StateOpened,
		Created:   h.created,
		Temporary: h.opts.Temporary,
		Shell:     h.rs.Kind(),
		Pending:   uint64(max(h.j.Unacked(), 0)),
	}
	if by, ok := h.holderLocked(); ok {
		si.HeldBy, si.HeldSince = by.client.Host, by.since
	}
	switch {
	case h.closing:
		si.State, si.Availability = wire.StateClosed, wire.AvailNone
	case h.disconnected:
		si.State, si.Availability = wire.StateDisconnected, wire.AvailNone
	case h.running != nil || h.att != nil || h.hold != nil:
		si.Availability = wire.AvailBusy
	default:
		si.Availability = wire.AvailAvailable
	}
	if h.running != nil {
		si.Command = h.running.text
	}
	if since, ok := h.idleClockLocked(); ok {
		si.IdleSince = since
		if idle := h.idleTimeoutLocked(); idle > 0 {
			si.ClosesAt = since.Add(idle)
		}
	}
	return si
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefaultInt(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}
