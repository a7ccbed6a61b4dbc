package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/mux"
)

// sshMasterPersist is how long the default master of an ssh:// host (no
// TETHER_CONTROL_PERSIST) waits for a client: the ControlPersist Tether
// gives ssh's own master.
const sshMasterPersist = 5 * time.Minute

// controlPersist reads TETHER_CONTROL_PERSIST: how long a master process
// keeps a host's connection for later tether commands after the last one
// ended (OpenSSH's ControlPersist). "0", "no", "off": no master at all;
// unset or "": set is false (masters for ssh:// hosts only, see setup).
func controlPersist(env *Env) (d time.Duration, set bool, err error) {
	v := strings.TrimSpace(env.Getenv("TETHER_CONTROL_PERSIST"))
	switch v {
	case "":
		return 0, false, nil
	case "0", "no", "off":
		return 0, true, nil
	}
	d, err = time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, true, fmt.Errorf("bad TETHER_CONTROL_PERSIST %q: use a Go duration like 10m, or 0 for none", v)
	}
	return d, true, nil
}

// startMaster starts `tether mux-master` for t in the background, in a
// process session of its own, with no terminal and no inherited output.
func (g *globals) startMaster(t client.Target, persist time.Duration) {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	args := []string{"mux-master", "--persist", persist.String(), "--connect-timeout", g.connectTimeout}
	if g.identity != "" {
		args = append(args, "-i", absPath(g.identity))
	}
	if g.knownHosts != "" {
		args = append(args, "--known-hosts", absPath(g.knownHosts))
	}
	if g.ssh.Port != 0 {
		args = append(args, "-p", fmt.Sprint(g.ssh.Port))
	}
	if g.ssh.Jump != "" {
		args = append(args, "-J", g.ssh.Jump)
	}
	if g.ssh.ConfigFile != "" {
		args = append(args, "-F", absPath(g.ssh.ConfigFile))
	}
	for _, o := range g.ssh.Options {
		args = append(args, "--ssh-option", o)
	}
	args = append(args, t.WithSession("").String())
	cmd := exec.Command(exe, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		// Reaped here if this process outlives it (tether enter); else
		// init reaps it.
		go cmd.Wait()
	}
}

func absPath(p string) string {
	if strings.HasPrefix(p, "~/") {
		return p // expanded against HOME by the master, as here
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// muxMasterCmd is the master process itself (started by startMaster).
func muxMasterCmd(env *Env, g *globals) *cobra.Command {
	var persist time.Duration
	cmd := &cobra.Command{
		Use:    "mux-master --persist DURATION HOST",
		Short:  "Hold a connection to HOST for other tether processes (started by TETHER_CONTROL_PERSIST)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := parseTargets(args[0], false)
			if err != nil {
				return err
			}
			if len(ts) != 1 || persist <= 0 {
				return usageError(cmd, "one host and a positive --persist")
			}
			s, err := g.setupWith(env, 0, false)
			if err != nil {
				return err
			}
			defer s.Close()
			t := ts[0]
			if env.Getenv("GOMAXPROCS") == "" {
				// One P for a master: it relays one connection (for an
				// ssh:// host ssh's pipes, one ssh thread at the other
				// end), and with two Ps each frame handed between
				// goroutines woke a second thread (#15): a fresh invoke
				// through a direct agent's master cost the master ~760 µs
				// of CPU and 48 context switches with two, ~560 and 29
				// with one (#18).
				runtime.GOMAXPROCS(1)
			}
			path := s.dialer.MuxSocket(mux.Dir(env.Getenv, homeDir(env)), t)
			lk, err := mux.TakeLock(path)
			if errors.Is(err, mux.ErrRunning) {
				return nil
			}
			if err != nil {
				return err
			}
			defer lk.Release()
			conn, err := s.dialer.Dial(cmd.Context(), t)
			if err != nil {
				return err
			}
			defer conn.Close()
			ln, err := lk.Listen()
			if err != nil {
				return err
			}
			done := make(chan struct{})
			go func() {
				select {
				case <-conn.Done():
				case <-cmd.Context().Done(): // SIGTERM
				}
				close(done)
			}()
			m := &mux.Master{
				Type: client.ChannelType, Persist: persist,
				Open: conn.OpenChannel, Done: done,
				Info: "master for " + s.full(t),
			}
			m.Serve(ln)
			return nil
		},
	}
	cmd.Flags().DurationVar(&persist, "persist", 0, "exit after this long without a client")
	return cmd
}

// muxCmd controls masters, as `ssh -O check|exit`.
func muxCmd(env *Env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mux status|stop HOSTS",
		Short: "Check or stop the background connections kept for later commands (TETHER_CONTROL_PERSIST, ssh:// hosts)",
		Long: `With TETHER_CONTROL_PERSIST=DURATION (e.g. 10m) in the environment, the first
tether command to a host starts a background master process that keeps its
SSH connection; later tether commands to that host (as the same local user)
borrow channels from it through a unix socket in $XDG_RUNTIME_DIR/tether (or
~/.cache/tether/mux), skipping the connection set-up, as OpenSSH's
ControlMaster/ControlPersist. The master exits after DURATION without a
client, or when its connection breaks (commands then connect directly).

  tether mux status HOSTS   says whether a master runs for each host (ssh -O check)
  tether mux stop HOSTS     stops them (ssh -O exit)

For ssh:// hosts there are two: ssh's own ControlMaster, which Tether starts
on its own (a socket in $XDG_RUNTIME_DIR/tether/ssh or ~/.cache/tether/ssh,
ControlPersist 5 minutes) unless your ssh_config gives the host a
ControlPath (then ssh uses yours), and a tether master, started even without
TETHER_CONTROL_PERSIST (5 minutes; TETHER_CONTROL_PERSIST=0 turns it off),
holding one tether serve --stdio through ssh. mux status and stop cover both
(ssh -O for ssh's).`,
	}
	each := func(stop bool) func(cmd *cobra.Command, args []string) error {
		return func(cmd *cobra.Command, args []string) error {
			ts, err := parseTargets(args[0], false)
			if err != nil {
				return err
			}
			dir := mux.Dir(env.Getenv, homeDir(env))
			login := g.login(env)
			d := &client.Dialer{DefaultUser: login}
			code := 0
			var so *client.SSHOptions
			for _, t := range ts {
				var msg string
				var err error
				if t.SSH {
					// ssh's own master (Tether's ControlPath, or the
					// user's): ssh -O check|exit.
					if so == nil {
						so = client.SSHOptionsFromEnv(env.Getenv, homeDir(env), Version)
						so.Flags = g.ssh
					}
					// TETHER_CONTROL_PERSIST's master first (it holds a
					// stdio agent's connection through ssh's), then ssh's.
					path := d.MuxSocket(dir, t)
					var tmsg string
					var terr error
					if stop {
						if terr = mux.Stop(path); terr == nil {
							tmsg = "; tether master stopped"
						}
					} else if m, e := mux.Status(path); e == nil {
						tmsg = "; tether master running: " + m
					} else {
						terr = e
					}
					op, what := "check", "master running: "
					if stop {
						op, what = "exit", "master stopped: "
					}
					if msg, err = so.Master(cmd.Context(), t, op); err == nil {
						msg = what + msg
					} else {
						msg = "no master (" + err.Error() + ")"
					}
					msg += tmsg
					if err != nil && terr != nil {
						code = 255
					}
					fmt.Fprintf(env.Stdout, "%s: %s\n", t, msg)
					continue
				}
				path := d.MuxSocket(dir, t)
				if stop {
					err = mux.Stop(path)
					msg = "master stopped"
				} else {
					msg, err = mux.Status(path)
					msg = "master running: " + msg
				}
				if err != nil {
					msg, code = "no master", 255
				}
				fmt.Fprintf(env.Stdout, "%s: %s\n", t, msg)
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "status HOSTS", Short: "Say whether a master runs for each host", Args: cobra.ExactArgs(1), RunE: each(false)},
		&cobra.Command{Use: "stop HOSTS", Short: "Stop the masters of the hosts", Args: cobra.ExactArgs(1), RunE: each(true)},
	)
	return cmd
}
