package sessionhost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/runspace/bash"
	"github.com/tether-sh/tether/internal/wire"
)

// newBash starts the session's bash: as the session host's user (the
// session host already runs as the user), born in the commands' cgroup
// (limitsHook), its FIFOs and state snapshots in the session directory's
// bash/ (0700).
func (h *Host) newBash() (runspace.Shell, error) {
	path := config.HostBash()
	if path == "" {
		return nil, fmt.Errorf("this host has no bash (looked in %v); open the session with --shell builtin", config.BashPaths)
	}
	dir := filepath.Join(h.opts.Dir, "bash")
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("bash state directory: %w", err)
	}
	return bash.New(context.Background(), bash.Options{
		Dir:         h.opts.Home,
		Env:         h.opts.Env,
		StateDir:    dir,
		Bash:        path,
		NoProfile:   h.opts.NoProfile,
		BeforeStart: h.limitsHook,
		AfterStart:  h.afterStartShell,
		LateOutput:  h.lateOutput,
		Log:         h.log,
	})
}

// afterStartShell puts bash under the session's limits, as the shell: the
// rlimit fallback's monitor does not scan for an idle bash alone.
func (h *Host) afterStartShell(pid int) error {
	if err := h.afterStart(pid); err != nil {
		return err
	}
	if h.group != nil {
		h.group.SetShell(pid)
	}
	return nil
}

// lateOutput journals what a background job writes after its command
// ended: as output of the session's latest command (the running one, or the
// last), so the next receive or attached command delivers it.
func (h *Host) lateOutput(stream int, p []byte) {
	h.mu.Lock()
	c := h.running
	if c == nil {
		c = h.lastCmd
	}
	h.mu.Unlock()
	if c == nil {
		return
	}
	kind := journal.KindStdout
	if stream == 2 {
		kind = journal.KindStderr
	}
	for len(p) > 0 {
		n := min(len(p), wire.MaxChunk)
		if _, err := h.j.Append(context.Background(), kind, c.id, p[:n]); err != nil {
			h.log.Warn("background output lost", "err", err)
			return
		}
		p = p[n:]
	}
}
