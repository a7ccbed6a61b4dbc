package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

func newCmd(env *Env, g *globals) *cobra.Command {
	var name, idle, shell string
	var noProfile bool
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "new [--name NAME] [--idle-timeout D] [--shell bash|builtin] [--no-profile] HOSTS...",
		Short: "Open a persistent session on each host (New-PSSession)",
		Long: `new opens a persistent session on each host and prints each session's
address, one per line. The session keeps its shell state (variables,
functions, directory, environment) between commands until it is removed or
closed by the host's limits.

The session's shell is the host's real bash (started like a login shell:
/etc/profile, then the first of ~/.bash_profile, ~/.bash_login, ~/.profile;
--no-profile skips them), or with --shell builtin Tether's own interpreter;
without --shell, the host's DefaultShell setting decides (tether config).

HOSTS are target expressions (web[01-20], @web; see tether hosts).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if shell != "" && shell != "bash" && shell != "builtin" {
				return usageError(cmd, "bad --shell %q: use bash or builtin", shell)
			}
			hosts, err := tf.resolve(cmd, env, args, hostAddrs)
			if err != nil {
				return err
			}
			return forTargets(cmd, env, g, hosts, tf.throttle, func(s *session, c *client.Conn, h client.Target) (func(), error) {
				resp, err := c.Call(cmd.Context(), wire.Request{Op: "new", Session: name, IdleTimeout: idle, Shell: shell, NoProfile: noProfile, Client: s.dialer.Client})
				if err != nil {
					return nil, fmt.Errorf("cannot open session: %w", err)
				}
				t := h.WithSession(resp.Session.Name)
				if err := s.registry.Add(s.full(t)); err != nil {
					fmt.Fprintf(env.Stderr, "tether: %v\n", err)
				}
				return func() { fmt.Fprintln(env.Stdout, s.display(t).String()) }, nil
			})
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	cmd.Flags().StringVar(&name, "name", "", "session name (default: a short unique one)")
	cmd.Flags().StringVar(&idle, "idle-timeout", "", "this session's idle timeout, up to the host's MaxIdleTimeout")
	cmd.Flags().StringVar(&shell, "shell", "", "the session's shell: bash or builtin (default: the host's DefaultShell)")
	cmd.Flags().BoolVar(&noProfile, "no-profile", false, "bash: do not read the login profile (/etc/profile, ~/.bash_profile, ...)")
	return cmd
}
