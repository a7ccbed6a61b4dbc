package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/wire"
)

func moduleCmd(env *Env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "module",
		Short: "Command modules on hosts, for tether import (Get-Module -PSSession)",
		Long: `A host's command modules are directories of commands (executables in
bin/, shell functions in functions.sh) with a module.toml and help files; the
agent finds them in its --modules directories, and as root also in each
user's ~/.config/tether/modules. tether import makes them local commands.`,
	}
	cmd.AddCommand(moduleListCmd(env, g))
	return cmd
}

func moduleListCmd(env *Env, g *globals) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list [--json] HOSTS",
		Short: "List the modules available on hosts (Get-Module -ListAvailable -PSSession)",
		Long: `list shows each module of each host: name, version, commands, and
description. A broken module is listed too, with the file at fault and why.

--json prints one JSON object per line: {"host", "name", "version",
"description", "path", "commands", "error"} per module, {"host", "error"}
for a host that could not be asked.`,
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
			type result struct {
				mods []wire.ModuleInfo
				err  error
			}
			results := make([]result, len(hosts))
			var wg sync.WaitGroup
			for i, h := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := s.dial(cmd.Context(), h)
					if err != nil {
						results[i].err = err
						return
					}
					defer c.Close()
					resp, err := c.Call(cmd.Context(), wire.Request{Op: wire.OpModuleList, Client: s.dialer.Client})
					if err != nil {
						results[i].err = fmt.Errorf("%s: cannot list modules: %w", s.display(h), err)
						return
					}
					results[i].mods = resp.Modules
				}()
			}
			wg.Wait()
			failed := false
			if jsonOut {
				enc := json.NewEncoder(env.Stdout)
				for i, r := range results {
					host := s.display(hosts[i]).String()
					if r.err != nil {
						failed = true
						enc.Encode(map[string]string{"host": host, "error": r.err.Error()})
						continue
					}
					for _, m := range r.mods {
						enc.Encode(struct {
							Host string `json:"host"`
							wire.ModuleInfo
						}{host, m})
					}
				}
			} else {
				tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "HOST\tMODULE\tVERSION\tCOMMANDS\tDESCRIPTION")
				for i, r := range results {
					host := s.display(hosts[i]).String()
					if r.err != nil {
						failed = true
						fmt.Fprintf(env.Stderr, "tether: %v\n", describeErr(s.display(hosts[i]), r.err))
						continue
					}
					for _, m := range r.mods {
						if m.Error != "" {
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", host, modOrDash(m.Name), modOrDash(m.Version), "BROKEN", modOneLine(m.Error))
							continue
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", host, m.Name, m.Version, strings.Join(m.Commands, ","), modOneLine(m.Description))
					}
				}
				tw.Flush()
			}
			if failed {
				return exitError{255}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "one JSON object per module")
	return cmd
}

func modOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func modOneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
