package sessionhost

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/syntax"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/wire"
)

// checkPeer admits only root (the agent in root mode) and the session's own
// user to the socket; the socket's 0600 mode says the same, this makes sure.
func checkPeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("peer uid %d is neither root nor the session's user", cred.Uid)
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
		b.WriteString(quote(a))
	}
	return b.String()
}

func quote(s string) string {
	if q, err := syntax.Quote(s, syntax.LangBash); err == nil {
		return q
	}
	// Bytes Quote refuses (invalid UTF-8, NUL) go through ANSI-C quoting.
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "\\x%02x", s[i])
	}
	b.WriteString("'")
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
		h.group, err = limits.Open(limits.Mechanism(o.LimitsMechanism), o.LimitsGroup)
	} else {
		h.group, err = limits.Create(limits.Rlimit, o.User+"."+o.Name, os.Getuid(), os.Getgid(), spec)
	}
	if err != nil {
		return fmt.Errorf("session limits: %w", err)
	}
	h.log.Info("session limits", "mechanism", h.group.Describe())
	return nil
}

// afterStart puts each process a command starts under the session's limits.
// The first one of a command also takes the limit counters that
// explainLimits compares with at the end.
func (h *Host) afterStart(pid int) error {
	if h.group == nil {
		return nil
	}
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
	return h.group.Add(pid)
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

// explainLimits says which limit stopped something during a command.
func (h *Host) explainLimits(before limits.Counters) string {
	if h.group == nil {
		return ""
	}
	after, err := h.group.Counters()
	if err != nil {
		return ""
	}
	h.mu.Lock()
	l := h.limits
	h.mu.Unlock()
	lines := limits.Explain(before, after, limits.Spec{MaxProcesses: l.MaxProcesses, MaxMemoryBytes: l.MaxMemoryBytes})
	return strings.Join(lines, "\n")
}
