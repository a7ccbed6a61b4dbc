package runspace

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"
)

// A job is one Run call: the process groups of its external programs and
// its interrupt state. Background statements (`cmd &`) of a command keep
// using the job of the command that started them, even after Run returned,
// as they inherit its context.
type job struct {
	ctx        context.Context
	cancel     context.CancelFunc
	grace      time.Duration
	jobControl bool // Streams.JobControl

	mu          sync.Mutex
	groups      []*pgroup
	cur         *pgroup // the group later processes join while its leader lives
	interrupted bool
	handled     bool // a process exited normally after the interrupt
	killTimer   *time.Timer
}

type pgroup struct {
	pgid        int
	leaderAlive bool
}

type jobKey struct{}

func newJob(parent context.Context, grace time.Duration) *job {
	// The job's context keeps the caller's values but not its
	// cancellation: cancelling the caller's context interrupts the job
	// (SIGINT first) instead of stopping it abruptly. Never cancelling it
	// after a normal end leaks nothing, as its parent is not cancellable.
	j := &job{grace: grace}
	ctx := context.WithValue(context.WithoutCancel(parent), jobKey{}, j)
	j.ctx, j.cancel = context.WithCancel(ctx)
	return j
}

func jobFrom(ctx context.Context) *job {
	j, _ := ctx.Value(jobKey{}).(*job)
	return j
}

// interrupt stops the interpreter, sends SIGINT to every process group of
// the job and arms the SIGKILL escalation.
func (j *job) interrupt() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.interrupted = true
	j.cancel()
	j.signalLocked(syscall.SIGINT)
	if j.killTimer == nil {
		j.killTimer = time.AfterFunc(j.grace, func() { j.signal(syscall.SIGKILL) })
	}
}

func (j *job) signal(sig syscall.Signal) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.signalLocked(sig)
}

func (j *job) signalLocked(sig syscall.Signal) {
	for _, g := range j.groups {
		// A process group ID cannot be reused while the group has
		// members, so this never reaches a stranger's group; an empty
		// group simply yields ESRCH.
		_ = syscall.Kill(-g.pgid, sig)
	}
}

// finish is called when Run returns. An armed SIGKILL escalation is
// cancelled unless some of the job's groups still have members (e.g.
// grandchildren that ignore SIGINT).
func (j *job) finish() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.killTimer != nil && len(j.livePgidsLocked()) == 0 {
		j.killTimer.Stop()
	}
}

func (j *job) pgids() []int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.livePgidsLocked()
}

func (j *job) livePgidsLocked() []int {
	var ids []int
	for _, g := range j.groups {
		if syscall.Kill(-g.pgid, 0) != syscall.ESRCH {
			ids = append(ids, g.pgid)
		}
	}
	return ids
}

// start runs startFn, which must start a process in the process group pgid
// (0: a new group led by the process) and return its pid. The job's current
// group is used while its leader lives; otherwise, or if joining fails
// because the group vanished meanwhile, a new group is created. A job that
// was interrupted starts nothing. The returned group is non-nil on success;
// leader reports whether the process leads it.
func (j *job) start(startFn func(pgid int) (int, error)) (g *pgroup, leader bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.ctx.Err(); err != nil {
		return nil, false, err
	}
	if j.cur != nil && j.cur.leaderAlive {
		if _, err := startFn(j.cur.pgid); err == nil {
			return j.cur, false, nil
		} else if !errors.Is(err, syscall.EPERM) {
			return nil, false, err
		}
		// EPERM: the group emptied between our check and the
		// child's setpgid; fall back to a new group.
	}
	pid, err := startFn(0)
	if err != nil {
		return nil, false, err
	}
	g = &pgroup{pgid: pid, leaderAlive: true}
	j.groups = append(j.groups, g)
	j.cur = g
	return g, true, nil
}

// abandon stops the rest of the command after the terminal's SIGINT
// killed its foreground program (Streams.JobControl), as interrupt does
// but without signalling: the terminal already signalled the program, and
// background groups are not the foreground's business.
func (j *job) abandon() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.interrupted = true
	j.cancel()
}

// exited records how a process of the job ended.
func (j *job) exited(signaled bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.interrupted && !signaled {
		j.handled = true
	}
}

// interruptStatus adjusts a command's final status after an interrupt:
// unless one of its processes handled SIGINT and exited on its own terms,
// or it died of another signal (SIGKILL after the grace period), the
// command reports 130 like bash, even if it was a builtin such as read.
func (j *job) interruptStatus(code int) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.interrupted && !j.handled && code < 128 {
		return 128 + int(syscall.SIGINT)
	}
	return code
}

// leaderDone records that a group's leader was reaped: later processes of
// the job start a new group.
func (j *job) leaderDone(g *pgroup) {
	j.mu.Lock()
	defer j.mu.Unlock()
	g.leaderAlive = false
	if j.cur == g {
		j.cur = nil
	}
}
