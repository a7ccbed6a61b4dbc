package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

func configCmd(env *Env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "List and change host limits (dir WSMan:\\localhost\\Shell)",
		Long: `config shows and changes a host's settings: idle timeout, run time, session
and connection limits, memory and process limits, output buffering. Anyone may
read them; changing them needs admin rights on the host. Settings from the
host's policy file override local ones and cannot be changed remotely.`,
	}
	var jsonOut bool
	list := &cobra.Command{
		Use:   "list [--json] HOSTS",
		Short: "Show every setting with its value, default, source and lock",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachHost(cmd, env, g, args[0], wire.Request{Op: wire.OpConfigList}, func(h client.Target, resp wire.Response, many bool) {
				if jsonOut {
					for _, e := range resp.Config {
						b, _ := json.Marshal(struct {
							Host string `json:"host"`
							wire.ConfigEntry
						}{h.String(), e})
						fmt.Fprintln(env.Stdout, string(b))
					}
					return
				}
				if many {
					fmt.Fprintf(env.Stdout, "%s:\n", h)
				}
				printConfig(env, resp.Config)
			})
		},
	}
	list.Flags().BoolVar(&jsonOut, "json", false, "one JSON object per setting")
	get := &cobra.Command{
		Use:   "get HOST KEY",
		Short: "Print one setting's value",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachHost(cmd, env, g, args[0], wire.Request{Op: wire.OpConfigGet, Key: args[1]}, func(h client.Target, resp wire.Response, many bool) {
				for _, e := range resp.Config {
					if many {
						fmt.Fprintf(env.Stdout, "%s: %s\n", h, e.Value)
					} else {
						fmt.Fprintln(env.Stdout, e.Value)
					}
				}
			})
		},
	}
	set := &cobra.Command{
		Use:   "set HOSTS KEY VALUE",
		Short: "Change a setting on each host (admins)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachHost(cmd, env, g, args[0], wire.Request{Op: wire.OpConfigSet, Key: args[1], Value: args[2]}, func(h client.Target, resp wire.Response, many bool) {
				for _, e := range resp.Config {
					fmt.Fprintf(env.Stdout, "%s: %s = %s\n", h, e.Key, e.Value)
				}
			})
		},
	}
	reset := &cobra.Command{
		Use:   "reset HOSTS KEY",
		Short: "Return a setting to its default on each host (admins)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachHost(cmd, env, g, args[0], wire.Request{Op: wire.OpConfigReset, Key: args[1]}, func(h client.Target, resp wire.Response, many bool) {
				for _, e := range resp.Config {
					fmt.Fprintf(env.Stdout, "%s: %s = %s (%s)\n", h, e.Key, e.Value, e.Source)
				}
			})
		},
	}
	for _, c := range []*cobra.Command{list, get, set, reset} {
		c.Flags().SetInterspersed(false)
	}
	cmd.AddCommand(list, get, set, reset)
	return cmd
}

// eachHost sends req to every host and prints each answer in host order.
func eachHost(cmd *cobra.Command, env *Env, g *globals, arg string, req wire.Request, print func(h client.Target, resp wire.Response, many bool)) error {
	many := strings.Contains(arg, ",")
	return forTargets(cmd, env, g, arg, false, func(s *session, c *client.Conn, h client.Target) (func(), error) {
		req := req
		req.Client = s.dialer.Client
		resp, err := c.Call(cmd.Context(), req)
		if err != nil {
			return nil, err
		}
		return func() { print(s.display(h), resp, many) }, nil
	})
}

func printConfig(env *Env, entries []wire.ConfigEntry) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tDEFAULT\tSOURCE\tLOCKED")
	for _, e := range entries {
		locked := "no"
		if e.Locked {
			locked = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Key, e.Value, e.Default, e.Source, locked)
	}
	tw.Flush()
}
