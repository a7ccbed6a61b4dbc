package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/bootstrap"
	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/sshtransport"
)

// hostCmd is `tether host prune ssh://HOSTS`: the upkeep of what the
// bootstrap put on hosts reached over ssh.
func hostCmd(env *Env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host prune ssh://HOSTS",
		Short: "Remove old tether binaries that the ssh:// bootstrap left on hosts",
	}
	prune := &cobra.Command{
		Use:   "prune ssh://HOSTS",
		Short: "Remove the old versions' binaries from ssh:// hosts, keeping this one's and any a session host still runs",
		Long: `On first contact with an ssh:// host, tether uploads itself to
~/.local/share/tether/bin/VERSION-SHA/tether there (or $TETHER_REMOTE_DIR).
After an upgrade the old versions stay while their session hosts run (their
sessions keep working). prune removes every VERSION-SHA directory from which
no process of yours runs on the host, and keeps this tether's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := parseTargets(args[0], false)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if !t.SSH {
					return fmt.Errorf("%s is not an ssh:// host: only hosts reached over ssh get binaries uploaded (use ssh://%s)", t, t.HostString())
				}
			}
			o := client.SSHOptionsFromEnv(env.Getenv, homeDir(env), Version)
			o.Flags = g.ssh
			o.Flags.Login = g.user
			tr := o.Transport
			tr.ConfigFile = firstNonEmpty(g.ssh.ConfigFile, tr.ConfigFile)
			for _, kv := range g.ssh.Options {
				tr.Extra = append(tr.Extra, "-o", kv)
			}
			if g.ssh.Jump != "" {
				tr.Extra = append(tr.Extra, "-J", g.ssh.Jump)
			}
			b := o.Bootstrap
			b.SSH = &tr
			cands, err := b.Candidates()
			if err != nil {
				return err
			}
			var keep []string
			for _, c := range cands {
				keep = append(keep, c.ID(Version))
			}
			code := 0
			for _, t := range ts {
				h := sshtransport.Host{User: t.User, Host: t.Host, Port: t.Port}
				if h.Port == 0 {
					h.Port = g.ssh.Port
				}
				p, err := b.Prune(cmd.Context(), h, keep)
				if err != nil {
					fmt.Fprintf(env.Stderr, "tether: %s: %v\n", t, err)
					code = 255
					continue
				}
				fmt.Fprintf(env.Stdout, "%s: %s\n", t, prunedLine(p))
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.AddCommand(prune)
	return cmd
}

func prunedLine(p *bootstrap.Pruned) string {
	var parts []string
	if len(p.Removed) > 0 {
		parts = append(parts, "removed "+strings.Join(p.Removed, " "))
	}
	if len(p.Running) > 0 {
		parts = append(parts, "kept (session hosts run it) "+strings.Join(p.Running, " "))
	}
	if len(p.Kept) > 0 {
		parts = append(parts, "kept (this version) "+strings.Join(p.Kept, " "))
	}
	if len(parts) == 0 {
		return "nothing installed"
	}
	return strings.Join(parts, "; ")
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
