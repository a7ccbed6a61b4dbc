package sessionhost

import (
	"io"
	"strings"

	"github.com/tether-sh/tether/internal/runspace"
)

// newShell makes the session's runspace: the builtin interpreter, or the
// host's bash (bashshell.go).
func (h *Host) newShell() (runspace.Shell, error) {
	if h.opts.Shell == runspace.KindBash {
		return h.newBash()
	}
	return runspace.New(runspace.Options{
		Dir:        h.opts.Home,
		Env:        h.opts.Env,
		AfterStart: h.afterStart,
		// Interactive commands' pseudo-terminal (pty.go), and the
		// session's cgroup, in which programs are born (misc.go).
		BeforeStart: h.startHook,
		Start:       h.startProcess,
	})
}

// writeNotices puts what the shell has to say (a profile's errors, a
// restart) on the command's stderr, where the user looks, once.
func (h *Host) writeNotices(w io.Writer) {
	if n := h.rs.Notices(); n != "" {
		h.log.Warn("shell notice", "notice", n)
		if !strings.HasSuffix(n, "\n") {
			n += "\n"
		}
		io.WriteString(w, n)
	}
}
