package agent

import (
	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/wire"
)

// shellChoice is the runspace a new session gets.
type shellChoice struct {
	kind      string // config.ShellBash or config.ShellBuiltin
	noProfile bool
}

// chooseShell resolves what a client asked for (tether new --shell, ""
// for the host's DefaultShell) against the host: a DefaultShell locked by
// policy holds for every session, and bash must be there.
func (a *Agent) chooseShell(asked string, noProfile bool) (shellChoice, error) {
	def := a.store.Effective().DefaultShell
	kind := def
	if asked != "" {
		_, norm, err := config.Validate("DefaultShell", asked)
		if err != nil {
			return shellChoice{}, wire.Errorf(wire.CodeBadRequest, "bad --shell %q: use bash or builtin", asked)
		}
		kind = norm
		if e, err := a.store.Get("DefaultShell"); err == nil && e.Locked && kind != def {
			return shellChoice{}, wire.Errorf(wire.CodeLimit, "this host's policy (%s) sets DefaultShell to %s for every session; open the session without --shell %s",
				e.SetBy, def, kind)
		}
	}
	if kind == config.ShellBash && config.HostBash() == "" {
		if asked == "" {
			// DefaultShell says bash (a policy shared by hosts that differ)
			// but this host has none: the builtin interpreter is the shell
			// it has.
			kind = config.ShellBuiltin
		} else {
			return shellChoice{}, wire.Errorf(wire.CodeBadRequest, "this host has no bash (looked in %v); use --shell builtin", config.BashPaths)
		}
	}
	return shellChoice{kind: kind, noProfile: noProfile}, nil
}
