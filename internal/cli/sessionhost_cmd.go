package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/sessionhost"
)

// sessionHostCmd is the process the agent starts for each session. It takes
// no flags: its settings (sessionhost.Launch) come on an inherited pipe, so
// that `ps` shows every local user only "tether session-host".
func sessionHostCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:    "session-host",
		Short:  "Run one session (started by the agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			launchf, ready := sessionhost.LaunchFiles()
			fail := func(err error) error {
				if ready != nil {
					fmt.Fprintf(ready, "error %v\n", err)
					ready.Close()
				}
				return err
			}
			if launchf == nil || ready == nil {
				return fmt.Errorf("session-host is started by tether serve, with its launch pipe as fd %d", sessionhost.LaunchFD)
			}
			l, err := sessionhost.ReadLaunch(launchf)
			launchf.Close()
			if err != nil {
				return fail(err)
			}
			if err := sessionhost.RedirectOutput(l.Dir); err != nil {
				return fail(err)
			}
			o := l.Options()
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			o.Home = env.Getenv("HOME")
			o.Env = sessionhost.CommandEnv(os.Environ())
			o.Ready = ready
			// The session outlives the agent: swallow a stray SIGHUP. Catching
			// (unlike ignoring) is not inherited by the commands it runs.
			signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
			defer stop()
			return sessionhost.Run(ctx, o)
		},
	}
}
