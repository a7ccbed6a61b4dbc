package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tether-sh/tether/internal/agent"
)

func serveCmd(env *Env) *cobra.Command {
	var o agent.Options
	var logLevel string
	var stopIt, stdio bool
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the host agent (sessions live on after it stops)",
		Long: `serve runs the Tether agent on this host: it accepts SSH connections from
tether clients, authenticates users by their authorized keys, and starts a
session host process for each session. Session hosts outlive the agent, so
restarting or upgrading it never ends a session.

As root it serves every local user, each session running as its user; as a
normal user it serves only that user.

serve --stop stops the agent that runs with the same state directory (its
pid is in STATE/agent.pid) and waits until it is gone; sessions keep running.

serve --stdio serves one client over stdin and stdout, as the user who ran
it: what a client reaching ssh://HOST runs there through the user's own
OpenSSH (which did the authentication). Its sessions live under the user's
state directory and outlive it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.StateDir == "" {
				o.StateDir = defaultStateDir(env)
			}
			if stopIt {
				return stopAgent(cmd.Context(), env, o.StateDir)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("bad --log-level %q: use debug, info, warn or error", logLevel)
			}
			if stdio && !cmd.Flags().Changed("log-level") {
				// ssh passes stderr to the client, which shows it
				// only when something failed.
				level = slog.LevelWarn
			}
			o.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
			if len(o.Modules) == 0 {
				o.Modules = defaultModuleDirs(env)
			}
			o.ScaleProcs = !stdio // one P while lightly loaded (agent/procs.go)
			a, err := agent.New(o)
			if err != nil {
				return err
			}
			if stdio {
				// One client, the one ssh connected: no listener and no
				// pid file (several run at once, one per connection).
				return a.ServeStdio(cmd.Context(), agent.StdioConn())
			}
			release, err := holdPidFile(o.StateDir)
			if err != nil {
				return err
			}
			defer release()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					o.Logger.Info("SIGHUP: re-reading policy")
					a.Store().ReloadPolicy()
				}
			}()
			err = a.Run(ctx)
			o.Logger.Info("agent stopped; sessions keep running")
			return err
		},
	}
	// The client's global flags (-i, --known-hosts, ...) mean nothing to
	// the agent: its help leaves them out.
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		c.InheritedFlags().VisitAll(func(f *pflag.Flag) { f.Hidden = true })
		c.Root().HelpFunc()(c, args)
	})
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", fmt.Sprintf(":%d", agent.DefaultPort), "address to listen on")
	f.StringVar(&o.StateDir, "state", "", "state directory (default /var/lib/tether as root, $XDG_STATE_HOME/tether otherwise)")
	f.StringVar(&o.AuthorizedKeys, "authorized-keys", "%h/.ssh/authorized_keys", "authorized keys file pattern (%h home, %u user)")
	f.StringVar(&o.ConfigPath, "config", "", "settings file (default STATE/config.toml)")
	f.StringVar(&o.PolicyPath, "policy", "/etc/tether/policy.toml", "central policy file: its settings override and lock local ones")
	f.StringVar(&o.AdminGroup, "admin-group", "", "group whose members may change settings and see all sessions (root always may)")
	f.StringArrayVar(&o.Modules, "modules", nil, "command module directory (repeatable)")
	f.StringVar(&o.AddrFile, "addr-file", "", "write the listening address to this file once listening")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&stdio, "stdio", false, "serve one client over stdin/stdout (what ssh:// targets run on the host through the user's OpenSSH)")
	f.BoolVar(&stopIt, "stop", false, "stop the agent running with this state directory (see STATE/agent.pid), and wait until it is gone")
	return cmd
}

func defaultStateDir(env *Env) string {
	if os.Geteuid() == 0 {
		return "/var/lib/tether"
	}
	if x := env.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "tether")
	}
	return filepath.Join(homeDir(env), ".local", "state", "tether")
}

func defaultModuleDirs(env *Env) []string {
	if os.Geteuid() == 0 {
		return []string{"/etc/tether/modules"}
	}
	return []string{filepath.Join(configDir(env), "modules")}
}
