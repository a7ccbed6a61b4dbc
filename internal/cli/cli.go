// Package cli is the tether command tree: flag parsing, output formatting and
// exit codes for every subcommand. The work itself lives in the agent,
// sessionhost and client packages; this package only wires them to the
// command line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tether-sh/tether/internal/remoting"
)

// Version is set at build time with -ldflags "-X .../cli.Version=...".
var Version = "0.1.0-dev"

// exitError carries an exit status out of a command without a message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Env is what a command may touch of the outside world; tests swap it.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// OneStream, when set, tunes the process for a run that moves one
	// stream (one target): see oneProcessor. Main sets it; tests leave it.
	OneStream func()
}

// AllProcessors gives the process back every scheduler processor: tether's
// main starts on one (internal/oneproc), which a one-target invoke keeps
// and every other command gets back from Run. Tests leave it a no-op.
var AllProcessors = func() {}

// Main runs the tether command line and returns the process exit status.
func Main(args []string) int {
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, OneStream: oneProcessor}
	return Run(context.Background(), env, args)
}

// Run is Main with an explicit environment.
func Run(ctx context.Context, env *Env, args []string) int {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	if err := applyTransport(env, args); err != nil {
		fmt.Fprintf(env.Stderr, "tether: %v\n", err)
		return 255
	}
	if len(args) >= 2 && args[0] == remoting.ScriptCommand {
		// A proxy's #! line: no command tree to build, and no flags
		// of ours among the arguments, which are all the command's.
		name := "proxy"
		ranCommand.Store(&name)
		return exitStatus(env, runProxyScript(ctx, env, args[1], args[2:]))
	}
	root := newRoot(env, args)
	root.SetArgs(args)
	name := ""
	if c, _, err := root.Find(args); err == nil && c != root {
		name = c.Name()
		ranCommand.Store(&name)
	}
	if name != "invoke" { // invoke: when it has several targets
		AllProcessors()
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	return exitStatus(env, root.ExecuteContext(ctx))
}

// exitStatus is the process's exit status for a command's error, which it
// prints unless it carries a status of its own.
func exitStatus(env *Env, err error) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "tether: %v\n", err)
	return 255
}

// globals are the client options every subcommand shares.
type globals struct {
	identity       string
	user           string
	knownHosts     string
	connectTimeout string
	ssh            sshFlags // -p, -J, -F, -o (sshflags.go)
}

// newRoot is the command tree for args: the whole of it, or, for a run of
// invoke (the command scripts call in loops), the root and invoke alone —
// building the other two dozen commands and their flags was ~4 % of a
// fresh invoke's CPU and ~40 of its page faults (#18).
func newRoot(env *Env, args []string) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "tether",
		Short: "Persistent, reconnectable remote shell sessions over SSH",
		Long: `Tether opens long-lived shell sessions on hosts running "tether serve",
runs commands in them (one host or hundreds), and lets you disconnect and come
back - from this machine or another - to find commands still running and their
output waiting.

Addresses: a host is [USER@]HOST[:PORT]; a session is [USER@]HOST[:PORT]/NAME.
Lists are comma-separated. Options come before positional arguments, as with ssh.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.Flags().SetInterspersed(false)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.identity, "identity", "i", "", "private key file (default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa, then ~/.config/tether/id_ed25519, the key make run creates)")
	pf.StringVarP(&g.user, "user", "l", "", "login name on the hosts (default: your local user name)")
	pf.StringVar(&g.knownHosts, "known-hosts", "", "known_hosts file (default ~/.config/tether/known_hosts)")
	pf.StringVar(&g.connectTimeout, "connect-timeout", "10", "how long to wait for a host to answer: seconds (as ssh's ConnectTimeout) or a duration like 1m")
	g.addSSHPersistentFlags(root)
	if subcommand(root, args) == "invoke" {
		root.AddCommand(invokeCmd(env, g))
		g.addSSHFlags(root)
		withUsage(root)
		root.SetFlagErrorFunc(flagError)
		return root
	}
	root.AddCommand(
		serveCmd(env),
		sessionHostCmd(env),
		sftpServerCmd(),
		newCmd(env, g),
		invokeCmd(env, g),
		cpCmd(env, g),
		enterCmd(env, g),
		listCmd(env, g),
		removeCmd(env, g),
		disconnectCmd(env, g),
		connectCmd(env, g),
		receiveCmd(env, g),
		interruptCmd(env, g),
		forgetCmd(env, g),
		configCmd(env, g),
		versionCmd(env),
		hostsCmd(env),
		keygenCmd(env),
		moduleCmd(env, g),
		importCmd(env, g),
		proxyCmd(env, g),
		muxCmd(env, g),
		muxMasterCmd(env, g),
		knownHostsCmd(env, g),
		hostCmd(env, g),
	)
	g.addSSHFlags(root)
	withUsage(root)
	root.SetFlagErrorFunc(flagError)
	addCompletions(root, env, g) // session addresses and setting names
	hookProxyHelp(root, env)     // `tether help PROXY` fetches an imported command's help from its host
	return root
}

func flagError(cmd *cobra.Command, err error) error {
	return usageError(cmd, "%v (%s --help lists its flags)", err, cmd.CommandPath())
}

// subcommand is the subcommand args name after the root's flags, or ""
// when that is not certain (a flag the root does not know, help, --).
func subcommand(root *cobra.Command, args []string) string {
	takesValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal == "" }
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--" || a == "-":
			return ""
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(a[2:], "=")
			f := root.PersistentFlags().Lookup(name)
			if name == "port" {
				f = portFlag
			}
			if f == nil {
				return ""
			}
			if !hasValue && takesValue(f) {
				i++
			}
		case strings.HasPrefix(a, "-"):
			f := root.PersistentFlags().ShorthandLookup(a[1:2])
			if a[1:2] == "p" {
				f = portFlag
			}
			if !takesValue(f) { // unknown, or a switch (-h, -v)
				return ""
			}
			if len(a) == 2 {
				i++
			}
		default:
			return a
		}
	}
	return ""
}

// portFlag stands for the root's own -p/--port (addSSHFlags), which takes
// a value, when subcommand looks at flags before it is defined.
var portFlag = &pflag.Flag{Name: "port"}

// withUsage makes every command's argument errors say how to call it, and
// stops flag parsing at the first positional argument, as ssh does.
func withUsage(c *cobra.Command) {
	c.Flags().SetInterspersed(false)
	if v := c.Args; v != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := v(cmd, args); err != nil {
				return usageError(cmd, "%v", err)
			}
			return nil
		}
	}
	if c.HasParent() && c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		// cobra would print the help and exit 0: a script that forgot
		// the subcommand (or misspelt it) must fail.
		c.RunE = func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			if len(args) > 0 {
				return usageError(cmd, "unknown subcommand %q for %s; use one of: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
			}
			return usageError(cmd, "%s needs a subcommand: %s", strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" "), strings.Join(names, ", "))
		}
	}
	for _, sub := range c.Commands() {
		withUsage(sub)
	}
}

// configDir is ~/.config/tether (or $XDG_CONFIG_HOME/tether).
func configDir(env *Env) string {
	if x := env.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "tether")
	}
	return filepath.Join(homeDir(env), ".config", "tether")
}

func homeDir(env *Env) string {
	if h := env.Getenv("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

// usageError is a bad invocation: it says what was wrong and how to fix it.
func usageError(cmd *cobra.Command, format string, args ...any) error {
	return fmt.Errorf("%s\nusage: %s", fmt.Sprintf(format, args...), strings.TrimSpace(cmd.UseLine()))
}
