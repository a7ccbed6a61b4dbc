package cli

import (
	"fmt"
	"sync"

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
			hosts, err := parseTargets(args[0], false)
			if err != nil {
				return err
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			pool := client.NewPool(s.dialer)
			defer pool.Close()
			type result struct {
				addr string
				err  error
			}
			results := make([]result, len(hosts))
			var wg sync.WaitGroup
			for i, h := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := pool.Get(cmd.Context(), h)
					if err != nil {
						results[i].err = err
						return
					}
					resp, err := c.Call(cmd.Context(), wire.Request{Op: "new", Session: name, IdleTimeout: idle, Client: s.dialer.Client})
					if err != nil {
						results[i].err = fmt.Errorf("%s: cannot open session: %w", s.display(h), err)
						return
					}
					t := h.WithSession(resp.Session.Name)
					results[i].addr = s.display(t).String()
					if err := s.registry.Add(s.full(t)); err != nil {
						fmt.Fprintf(env.Stderr, "tether: %v\n", err)
					}
				}()
			}
			wg.Wait()
			failed := false
			for _, r := range results {
				if r.err != nil {
					fmt.Fprintf(env.Stderr, "tether: %v\n", r.err)
					failed = true
					continue
				}
				fmt.Fprintln(env.Stdout, r.addr)
			}
			if failed {
				return exitError{255}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "session name (default: a short unique one)")
	cmd.Flags().StringVar(&idle, "idle-timeout", "", "this session's idle timeout, up to the host's MaxIdleTimeout")
	return cmd
}
