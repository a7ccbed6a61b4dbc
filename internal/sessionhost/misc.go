package sessionhost

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/peercred"
	"github.com/tether-sh/tether/internal/shquote"
	"github.com/tether-sh/tether/internal/wire"
)

// checkPeer admits only root (the agent in root mode) and the session's own
// user to the socket; the socket's 0600 mode says the same, this makes sure.
func checkPeer(c net.Conn) error {
	uid, err := peercred.UID(c)
	if errors.Is(err, peercred.ErrNotUnix) {
		return nil
	}
	if err != nil {
		return err
	}
	if uid != 0 && uid != os.Getuid() {
		return fmt.Errorf("peer uid %d is neither root nor the session's user", uid)
	}
	return nil
}

func parseMode(s string) (journal.Mode, error) {
	return journal.ParseMode(orDefault(s, "block"))
}

// argvScript quotes an argument list into one simple command so that every
// argument reaches the program exactly as given, never re-parsed.
func argvScript(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shquote.Bash(a))
	}
	return b.String()
}

// openLimits joins the cgroup the agent made for this session, or, where
// the agent could not make one, enforces the limits here with rlimits and a
// process monitor.
func (h *Host) openLimits() error {
	o := h.opts
	spec := limits.Spec{MaxProcesses: o.Limits.MaxProcesses, MaxMemoryBytes: o.Limits.MaxMemoryBytes}
	var err error
	if o.LimitsGroup != "" {
		h.group, err = limits.OpenName(limits.Mechanism(o.LimitsMechanism), o.LimitsGroup)
	} else {
		// Nothing on disk: the id only names the group in the log.
		h.group, err = limits.Create(limits.Rlimit, limits.GroupID{UID: os.Getuid(), User: o.User, Session: o.Name, StateDir: o.Dir}, -1, -1, spec)
	}
	if err != nil {
		return fmt.Errorf("session limits: %w", err)
	}
	base := watchBase(h)
	h.log.Info("session limits", "mechanism", h.group.Describe(), "host_memory_base", base)
	return nil
}

// startHook is the builtin runspace's BeforeStart: the pseudo-terminal's
// part (pty.go), then the limit counters before the command's first
// process (taken before its start, which the process limit may refuse).
func (h *Host) startHook(cmd *exec.Cmd) {
	h.beforeStart(cmd)
	if h.group != nil {
		h.takeCounters()
	}
}

// startProcess is the builtin runspace's Start: the program is born inside
// the commands' group, so that nothing it forks at once escapes
// (limits.Group.Start: on cgroup v1 it forks on a thread that stays in the
// group, with no thread move per command).
func (h *Host) startProcess(cmd *exec.Cmd, start func() error) error {
	if h.group == nil {
		return start()
	}
	placeErr, err := h.group.Start(cmd, start)
	if placeErr != nil {
		// AfterStart's Add still moves it in.
		h.log.Warn("cannot start the process inside the session's cgroup", "err", placeErr)
	}
	return err
}

// limitsHook starts the session's bash inside the commands' group (once
// per session: bash forks its commands there itself; a terminal does not
// concern it: pty.go gives bash's group the terminal).
func (h *Host) limitsHook(cmd *exec.Cmd) {
	if h.group != nil {
		// The counters before the command's first process: taken before
		// its start, which the process limit may refuse (EAGAIN).
		h.takeCounters()
		if err := h.group.PrepareStart(cmd); err != nil {
			// AfterStart's Add still moves it in.
			h.log.Warn("cannot start the process inside the session's cgroup", "err", err)
		}
	}
}

// afterStart puts each process a command starts under the session's limits.
func (h *Host) afterStart(pid int) error {
	if h.group == nil {
		return nil
	}
	h.takeCounters()
	return h.group.Add(pid)
}

// takeCounters takes, at a command's first process, the limit counters
// that limitStops compares with at the end.
func (h *Host) takeCounters() {
	h.mu.Lock()
	first := h.countersBefore == nil
	h.mu.Unlock()
	if first {
		c := h.limitCounters()
		h.mu.Lock()
		if h.countersBefore == nil {
			h.countersBefore = &c
		}
		h.mu.Unlock()
	}
}

// applyProcessLimits follows a settings change. Cgroups are the agent's to
// change; the rlimit fallback lives here.
func (h *Host) applyProcessLimits(l wire.Limits) {
	if h.group == nil || h.group.Mechanism() != limits.Rlimit {
		return
	}
	h.group.Update(limits.Spec{MaxProcesses: l.MaxProcesses, MaxMemoryBytes: l.MaxMemoryBytes})
}

func (h *Host) limitCounters() limits.Counters {
	if h.group == nil {
		return limits.Counters{}
	}
	c, _ := h.group.Counters()
	return c
}

// limitStops says which limit stopped something during a command: the
// group's counters since the command's first process (before; nil when it
// started none), and the session host's own memory watch (hostMem).
func (h *Host) limitStops(before *limits.Counters, hostMem bool) string {
	if h.group == nil {
		return ""
	}
	h.group.EndCommand()
	h.mu.Lock()
	l := h.limits
	h.mu.Unlock()
	spec := limits.Spec{MaxProcesses: l.MaxProcesses, MaxMemoryBytes: l.MaxMemoryBytes}
	var lines []string
	if before != nil {
		if after, err := h.group.Counters(); err == nil {
			lines = limits.Explain(*before, after, spec)
		}
	}
	if hostMem {
		if m := limits.StopMessage(limits.MemoryLimit, spec); !slices.Contains(lines, m) {
			lines = append(lines, m)
		}
	}
	return strings.Join(lines, "\n")
}
