package cli

import (
	"fmt"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

func interruptCmd(env *Env, g *globals) *cobra.Command {
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "interrupt SESSIONS...",
		Short: "Ctrl-C from anywhere: interrupt the command running in sessions",
		Long: `interrupt sends SIGINT to the command running in each session, as Ctrl-C in
the client that started it would, from any machine with your key and even
while another client is attached (that client sees the command end). The
session stays open with all its state.

Exit status: 0 when a command was interrupted in every session, 1 when one
of them had no command running, 255 when one could not be reached.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := tf.resolve(cmd, env, args, sessionAddrs)
			if err != nil {
				return err
			}
			var idle atomic.Bool // ops run concurrently
			err = forTargets(cmd, env, g, targets, tf.throttle, func(s *session, c *client.Conn, t client.Target) (func(), error) {
				resp, err := c.Call(cmd.Context(), wire.Request{Op: wire.OpInterrupt, Session: t.Session, Client: s.dialer.Client})
				if err != nil {
					return nil, err
				}
				if resp.Cmd == 0 {
					idle.Store(true)
					return func() {
						fmt.Fprintf(env.Stderr, "tether: %s: no command is running; nothing to interrupt\n", s.display(t))
					}, nil
				}
				return func() { fmt.Fprintf(env.Stdout, "%s: interrupted %q\n", s.display(t), resp.Text) }, nil
			})
			if err == nil && idle.Load() {
				return exitError{1}
			}
			return err
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	return cmd
}
