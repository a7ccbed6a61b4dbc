package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

func newCmd(env *Env, g *globals) *cobra.Command {
	var name, idle string
	cmd := &cobra.Command{
		Use:   "new [--name NAME] [--idle-timeout D] HOSTS",
		Short: "Open a persistent session on each host (New-PSSession)",
		Long: `new opens a persistent session on each host and prints each session's
address, one per line. The session keeps its shell state (variables,
functions, directory, environment) between commands until it is removed or
closed by the host's limits.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forTargets(cmd, env, g, args[0], false, func(s *session, c *client.Conn, h client.Target) (func(), error) {
				resp, err := c.Call(cmd.Context(), wire.Request{Op: wire.OpNew, Session: name, IdleTimeout: idle, Client: s.dialer.Client})
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
	cmd.Flags().StringVar(&name, "name", "", "session name (default: a short unique one)")
	cmd.Flags().StringVar(&idle, "idle-timeout", "", "this session's idle timeout, up to the host's MaxIdleTimeout")
	return cmd
}
