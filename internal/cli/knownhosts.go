package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/sshauth"
)

func knownHostsCmd(env *Env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "known-hosts",
		Short: "Manage the host keys this client trusts (~/.config/tether/known_hosts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError(cmd, "known-hosts needs a subcommand: remove")
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove HOST[:PORT]...",
		Short: "Forget the keys of hosts, as ssh-keygen -R does",
		Long: `known-hosts remove deletes every key of each HOST[:PORT] from the known_hosts
file (--known-hosts, default ~/.config/tether/known_hosts): plain and hashed
entries, the whole line when it lists other hosts too. Comments, other
hosts, @cert-authority and @revoked lines stay. The old file is kept as
FILE.old. Do this after a host was reinstalled; the next connection trusts
its new key on first use.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.knownHosts
			if path == "" {
				path = filepath.Join(configDir(env), "known_hosts")
			}
			kh := &sshauth.KnownHosts{Path: path, DefaultPort: client.DefaultPort}
			var missing []string
			for _, a := range args {
				t, err := client.ParseTarget(a)
				if err != nil {
					return err
				}
				if t.Session != "" {
					return fmt.Errorf("%s is a session address; known-hosts remove takes HOST[:PORT]", a)
				}
				removed, err := kh.Remove(t.HostPort())
				if err != nil {
					return err
				}
				if len(removed) == 0 {
					missing = append(missing, t.HostString())
					continue
				}
				word, lines := "line", make([]string, len(removed))
				if len(removed) > 1 {
					word = "lines"
				}
				for i, r := range removed {
					lines[i] = fmt.Sprint(r.Line)
				}
				fmt.Fprintf(env.Stdout, "removed %s of %s from %s (%s %s); the old file is %s.old\n",
					plural(len(removed), "key", "keys"), t.HostString(), path, word, strings.Join(lines, ", "), path)
			}
			if len(missing) > 0 {
				return fmt.Errorf("no key of %s in %s", strings.Join(missing, ", "), path)
			}
			return nil
		},
	})
	return cmd
}
