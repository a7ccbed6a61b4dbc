package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
)

// sshOptionValue is -o Key=Value, repeatable, checked as it is given.
type sshOptionValue struct{ opts *[]string }

func (v sshOptionValue) String() string { return strings.Join(*v.opts, ",") }
func (v sshOptionValue) Type() string   { return "Key=Value" }
func (v sshOptionValue) Set(s string) error {
	if err := client.CheckSSHOption(s); err != nil {
		return err
	}
	*v.opts = append(*v.opts, s)
	return nil
}

// addSSHFlags gives every command ssh's -p PORT, -J JUMP, -F FILE and
// -o Key=Value, before the targets as ssh takes them. -o is also
// --ssh-option, the only spelling where a command has an -o of its own
// (list -o wide); the port is -P where a command has a -p of its own
// (cp -p keeps times, as scp's -p does, whose port is -P too).
func (g *globals) addSSHFlags(root *cobra.Command) {
	const portUsage = "port on the hosts: the agent's (default 4422), or sshd's for ssh:// targets (default ssh_config's)"
	val := sshOptionValue{&g.ssh.Options}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Flags().Lookup("port") == nil {
			short := "p"
			if c.Flags().ShorthandLookup("p") != nil {
				short = "P"
			}
			c.Flags().IntVarP(&g.ssh.Port, "port", short, 0, portUsage)
		}
		if c != root && c.Flags().ShorthandLookup("o") == nil && c.Flags().Lookup("option") == nil {
			f := c.Flags().VarPF(val, "option", "o", "an ssh_config option, Key=Value, as ssh -o (-o works too, except for list, whose -o is its output), repeatable")
			f.Hidden = true // listed once, as --ssh-option
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// addSSHPersistentFlags defines the root's ssh options (-J, -F,
// --ssh-option), before the subcommands exist (addSSHFlags adds the rest).
func (g *globals) addSSHPersistentFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVarP(&g.ssh.Jump, "jump", "J", "", "reach the hosts through these jump hosts (ssh -J; also ssh_config's ProxyJump)")
	pf.StringVarP(&g.ssh.ConfigFile, "ssh-config", "F", "", "ssh_config file for ssh:// targets and host aliases (ssh -F; default ~/.ssh/config, or $TETHER_SSH_CONFIG)")
	pf.Var(sshOptionValue{&g.ssh.Options}, "ssh-option", "an ssh_config option, Key=Value, as ssh -o (-o works too, except for list, whose -o is its output), repeatable")
}

// sshFlags are the globals' ssh options.
type sshFlags = client.SSHFlags
