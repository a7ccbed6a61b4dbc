package cli

import (
	"fmt"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
)

func forgetCmd(env *Env, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "forget ADDR...",
		Short: "Drop sessions from this client's list, without asking their hosts",
		Long: `forget drops entries from the local registry (the sessions tether list shows
without hosts), for instance a session whose host is gone or an address
mistyped. Nothing is asked of, or changed on, any host: use tether remove to
close a session.

ADDR is a session address, a host (all its sessions), or HOST/PATTERN with
shell wildcards in the name: tether forget 'web1/*' 'web2/tmp-*'.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			type pattern struct {
				host string // full [USER@]HOST[:PORT]
				name string // glob of the session name
				arg  string
			}
			var pats []pattern
			for _, arg := range args {
				for _, part := range strings.Split(arg, ",") {
					if part = strings.TrimSpace(part); part == "" {
						continue
					}
					t, err := client.ParseTarget(part)
					if err != nil {
						return err
					}
					name := t.Session
					if name == "" {
						name = "*"
					}
					if _, err := path.Match(name, ""); err != nil {
						return fmt.Errorf("bad pattern %q: %v", part, err)
					}
					pats = append(pats, pattern{host: s.full(t.WithSession("")), name: name, arg: part})
				}
			}
			matched := make([]bool, len(pats))
			_, err = s.registry.RemoveFunc(func(addr string) bool {
				t, err := client.ParseTarget(addr)
				if err != nil {
					return false
				}
				host := t.WithSession("").String()
				drop := false
				for i, p := range pats {
					if ok, _ := path.Match(p.name, t.Session); ok && host == p.host {
						matched[i], drop = true, true
					}
				}
				return drop
			})
			if err != nil {
				return err
			}
			missing := false
			for i, p := range pats {
				if !matched[i] {
					missing = true
					fmt.Fprintf(env.Stderr, "tether: %s: no remembered session matches (tether list shows them)\n", p.arg)
				}
			}
			if missing {
				return exitError{1}
			}
			return nil
		},
	}
}
