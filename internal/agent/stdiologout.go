package agent

import (
	"bufio"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// stdioMode is set while this process serves a client over stdio (a
// login through the user's OpenSSH): session hosts it starts must outlive
// that login's systemd scope.
var stdioMode atomic.Bool

// LogoutNote is the line a stdio agent writes on stderr, once per host
// user and version, when session hosts may die at logout; the client
// passes lines starting with it to the user (sshtransport.Options.Notify).
const LogoutNote = "tether: note: "

// logoutPlan says how session hosts survive logout here, decided once.
type logoutPlan struct {
	scope []string // argv before the session host's (systemd-run --user --scope …)
	note  string   // to say once when nothing protects them
}

var (
	planOnce sync.Once
	plan     logoutPlan
)

// logindConfs are logind's config files, in the order systemd reads them
// (a later KillUserProcesses= wins). TETHER_LOGIND_CONF replaces them
// (tests: a fake KillUserProcesses=yes on a machine without systemd).
func logindConfs() []string {
	if p := os.Getenv("TETHER_LOGIND_CONF"); p != "" {
		return []string{p}
	}
	files := []string{"/usr/lib/systemd/logind.conf", "/etc/systemd/logind.conf"}
	var drop []string
	for _, d := range []string{"/usr/lib/systemd/logind.conf.d", "/run/systemd/logind.conf.d", "/etc/systemd/logind.conf.d"} {
		// rootpath: a stdio agent runs as the one user it serves; system files or that user's own
		m, _ := filepath.Glob(filepath.Join(d, "*.conf"))
		drop = append(drop, m...)
	}
	sort.SliceStable(drop, func(i, j int) bool { return filepath.Base(drop[i]) < filepath.Base(drop[j]) })
	return append(files, drop...)
}

// killUserProcesses reads KillUserProcesses= (default no, as Debian,
// Ubuntu and Fedora ship systemd).
func killUserProcesses() bool {
	on := false
	for _, p := range logindConfs() {
		// rootpath: a stdio agent runs as the one user it serves; system files or that user's own
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if ok && strings.TrimSpace(k) == "KillUserProcesses" {
				switch strings.ToLower(strings.TrimSpace(v)) {
				case "yes", "true", "1", "on":
					on = true
				default:
					on = false
				}
			}
		}
		f.Close()
	}
	return on
}

// decideLogout finds how session hosts outlive logout. Without
// KillUserProcesses nothing kills them (they are in a process session of
// their own, not the login's). With it, systemd-run --user --scope moves
// each into the user's manager, which survives logout when the user
// lingers (enabled here if logind allows it); when neither works, the
// user is told once.
func decideLogout(self *user.User) logoutPlan {
	if !killUserProcesses() {
		return logoutPlan{}
	}
	linger := filepath.Join("/var/lib/systemd/linger", self.Username)
	// rootpath: a stdio agent runs as the one user it serves; system files or that user's own
	if _, err := os.Stat(linger); err != nil {
		if lc, err := exec.LookPath("loginctl"); err == nil {
			exec.Command(lc, "enable-linger", self.Username).Run()
		}
	}
	// rootpath: a stdio agent runs as the one user it serves; system files or that user's own
	_, lerr := os.Stat(linger)
	run, rerr := exec.LookPath("systemd-run")
	bus := os.Getenv("XDG_RUNTIME_DIR")
	// rootpath: a stdio agent runs as the one user it serves; system files or that user's own
	_, berr := os.Stat(filepath.Join(bus, "bus"))
	if lerr == nil && rerr == nil && bus != "" && berr == nil {
		scope := []string{run, "--user", "--scope", "--quiet", "--collect", "--"}
		// Checked once: a user manager that does not answer would leave
		// every session host unstarted.
		if exec.Command(scope[0], append(scope[1:], "true")...).Run() == nil {
			return logoutPlan{scope: scope}
		}
		berr = os.ErrNotExist
	}
	why := "no systemd-run"
	switch {
	case rerr == nil && (bus == "" || berr != nil):
		why = "no systemd user manager for " + self.Username
	case rerr == nil:
		why = "lingering is off for " + self.Username + " and loginctl enable-linger was refused"
	}
	return logoutPlan{note: "this host's logind has KillUserProcesses=yes and " + why +
		": sessions end when " + self.Username + " logs out of every login; ask the admin for `loginctl enable-linger " + self.Username + "`"}
}

// wrapHost puts a session host started for a stdio client under the plan:
// systemd-run's scope, and the note said once (per user and version; a
// marker in the state directory).
func (a *Agent) wrapHost(cmd *exec.Cmd) {
	if !stdioMode.Load() {
		return
	}
	planOnce.Do(func() { plan = decideLogout(a.self) })
	if len(plan.scope) > 0 {
		args := append(append([]string{}, plan.scope...), cmd.Args...)
		args[len(plan.scope)] = cmd.Path
		cmd.Path, cmd.Args = plan.scope[0], args
		// systemd-run finds the user's manager through these; the
		// session host's environment is otherwise the agent's choice.
		for _, k := range []string{"XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"} {
			if v := os.Getenv(k); v != "" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		return
	}
	if plan.note == "" {
		return
	}
	mark := filepath.Join(a.opts.StateDir, "logout-noted")
	// rootpath: a stdio agent runs as the one user it serves; system files or that user's own
	if f, err := os.OpenFile(mark, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		f.Close()
		os.Stderr.WriteString(LogoutNote + plan.note + "\n")
	}
}
