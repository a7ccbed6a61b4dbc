package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/modules"
	"github.com/tether-sh/tether/internal/remoting"
	"github.com/tether-sh/tether/internal/shquote"
	"github.com/tether-sh/tether/internal/wire"
)

// importOpts are import's flags.
type importOpts struct {
	prefix, dir         string
	force, list, remove bool
	prefixSet           bool               // --prefix was given (for --remove)
	usage               func(string) error // a usage error naming the command line
}

func importCmd(env *Env, g *globals) *cobra.Command {
	var o importOpts
	cmd := &cobra.Command{
		Use:   "import [--prefix P] [--dir DIR] [--force] TARGET MODULE | --list | --remove (TARGET MODULE | NAME...)",
		Short: "Make a module's commands on a host into local commands (Import-PSSession)",
		Long: `import makes one local command (a proxy) for each command of MODULE on
TARGET, in DIR (default ~/.local/share/tether/bin). Running a proxy runs the
command on the host, in a persistent session kept for implicit remoting, with
the exact arguments given, stdin, stdout, stderr and the exit status passed
through. Proxies are small executables: use them from any shell, script,
cron job or xargs.

--prefix P names the proxies as PowerShell's -Prefix does: before the noun of
a Verb-Noun name (get-route becomes get-Proute), in front of any other name.
A name already taken by a proxy of another host, module or version, or by a
file tether did not make, is refused unless --force.

Help is read from the host each time: PROXY --tether-help, or tether help PROXY.

import --list shows the proxies and where they come from; import --remove
TARGET MODULE (or --remove NAME...) deletes them.

The proxies use the -i and --known-hosts given to import, if any.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.prefixSet = cmd.Flags().Changed("prefix")
			o.usage = func(msg string) error { return usageError(cmd, "%s", msg) }
			return runImport(cmd.Context(), env, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.prefix, "prefix", "", "prefix for the local command names")
	f.StringVar(&o.dir, "dir", "", "directory for the proxies (default ~/.local/share/tether/bin)")
	f.BoolVar(&o.force, "force", false, "replace proxies of the same name from another host, module or version")
	f.BoolVar(&o.list, "list", false, "list the imported commands")
	f.BoolVar(&o.remove, "remove", false, "remove imported commands")
	return cmd
}

// runImport is tether import: list, remove, or import a module's commands.
func runImport(ctx context.Context, env *Env, g *globals, o importOpts, args []string) error {
	if o.usage == nil {
		o.usage = func(msg string) error { return errors.New(msg) }
	}
	m := importManifest(env)
	switch {
	case o.list:
		if len(args) > 0 {
			return o.usage("--list takes no arguments")
		}
		return listImports(env, m)
	case o.remove:
		if len(args) == 0 {
			return o.usage("--remove needs TARGET MODULE or proxy names")
		}
		return removeImports(env, g, m, args, o.prefix, o.prefixSet)
	}
	if len(args) != 2 {
		return o.usage("import needs TARGET and MODULE")
	}
	if err := remoting.CheckPrefix(o.prefix); err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		dir = defaultProxyDir(env)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	return doImport(ctx, env, g, m, args[0], args[1], o.prefix, abs, o.force)
}

// plural is "1 command" or "2 commands".
var plural = remoting.Plural

// importManifest is the user's import manifest.
func importManifest(env *Env) *remoting.Manifest {
	return &remoting.Manifest{Path: filepath.Join(configDir(env), "imports.json")}
}

func defaultProxyDir(env *Env) string {
	if x := env.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "tether", "bin")
	}
	return filepath.Join(homeDir(env), ".local", "share", "tether", "bin")
}

func doImport(ctx context.Context, env *Env, g *globals, m *remoting.Manifest, targetArg, module, prefix, dir string, force bool) error {
	t, err := client.ParseTarget(targetArg)
	if err != nil {
		return err
	}
	if !modules.ValidModuleName(module) {
		return fmt.Errorf("bad module name %q: module names are 1-64 letters, digits, '.', '_' or '-' (tether module list %s shows them)", module, targetArg)
	}
	if m.Path, err = filepath.Abs(m.Path); err != nil {
		return err
	}
	s, err := g.setup(env)
	if err != nil {
		return err
	}
	defer s.Close()
	conn, err := s.dial(ctx, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := conn.Call(ctx, wire.Request{Op: wire.OpModuleList, Client: s.dialer.Client})
	if err != nil {
		return fmt.Errorf("%s: cannot list modules: %w", s.display(t).HostString(), err)
	}
	var info *wire.ModuleInfo
	var broken []string
	for i, mi := range resp.Modules {
		if mi.Name != module {
			continue
		}
		if mi.Error != "" {
			broken = append(broken, mi.Error)
			continue
		}
		if info == nil {
			info = &resp.Modules[i]
		}
	}
	if info == nil {
		if len(broken) > 0 {
			return fmt.Errorf("module %s on %s is broken: %s", module, s.display(t).HostString(), remoting.SafeText(strings.Join(broken, "; ")))
		}
		return fmt.Errorf("no module %s on %s (tether module list %s shows them)", module, s.display(t).HostString(), s.display(t).HostString())
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the tether executable for the proxies: %w", err)
	}
	identity, knownHosts := g.identity, g.knownHosts
	for _, p := range []*string{&identity, &knownHosts} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	made, err := remoting.Plan(*info, remoting.Source{
		Host: s.full(t), Prefix: prefix, Dir: dir, Identity: identity, KnownHosts: knownHosts,
	}, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w; nothing imported", s.display(t).HostString(), err)
	}
	if len(made) == 0 {
		return fmt.Errorf("module %s on %s has no commands", module, s.display(t).HostString())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := m.Install(exe, made, force); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "imported %s of module %s %s from %s into %s:\n", plural(len(made), "command", "commands"), info.Name, info.Version, s.display(t), dir)
	for _, e := range made {
		fmt.Fprintf(env.Stdout, "  %-24s %s\n", e.Name, e.Command)
		if p, err := remoting.LookPath(env.Getenv("PATH"), e.Name); err == nil && p != e.Path {
			fmt.Fprintf(env.Stderr, "tether: warning: %s is also %s, which comes first in PATH\n", e.Name, p)
		}
	}
	if !remoting.OnPath(env.Getenv("PATH"), dir) {
		fmt.Fprintf(env.Stdout, "%s is not in your PATH; add this line to your shell's startup file:\n  export PATH=%s:\"$PATH\"\n", dir, shquote.Quote(dir))
	}
	return nil
}

func listImports(env *Env, m *remoting.Manifest) error {
	entries, err := m.Entries()
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(env.Stderr, "tether: nothing imported (tether import TARGET MODULE)")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST\tMODULE\tVERSION\tCOMMAND\tPATH")
	var old []string
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Host, e.Module, e.Version, e.Command, e.Path)
		if remoting.OldProxy(e.Path) {
			old = append(old, e.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(old) > 0 {
		// The first format wrote the host's text into the script; a new
		// import writes scripts that read it as data.
		fmt.Fprintf(env.Stderr, "tether: %s made by an older tether import (%s); import again to replace them with the safer format\n",
			plural(len(old), "proxy was", "proxies were"), strings.Join(old, " "))
	}
	return nil
}

func removeImports(env *Env, g *globals, m *remoting.Manifest, args []string, prefix string, byPrefix bool) error {
	var host string
	if len(args) == 2 {
		if t, err := client.ParseTarget(args[0]); err == nil {
			login := g.user
			if login == "" {
				login = env.Getenv("USER")
			}
			if login == "" {
				if u, err := user.Current(); err == nil {
					login = u.Username
				}
			}
			host = t.WithUser(login).String()
		}
	}
	module := ""
	if host != "" {
		module = args[1]
	}
	removed, err := m.Remove(args, host, module, prefix, byPrefix)
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		return fmt.Errorf("no imported command matches %s (tether import --list shows them)", strings.Join(args, " "))
	}
	for _, e := range removed {
		fmt.Fprintf(env.Stdout, "removed %s (%s)\n", e.Path, e.Origin())
	}
	return closeUnusedImplicit(env, g, m, removed)
}

// closeUnusedImplicit closes the implicit session on each host that the
// removed proxies used and no proxy left uses, so that removing the last
// proxy leaves no session host running. A host that cannot be reached is
// named with the command that closes it later; it does not fail the removal.
func closeUnusedImplicit(env *Env, g *globals, m *remoting.Manifest, removed []remoting.Entry) error {
	left, err := m.Entries()
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, e := range removed {
		t, err := client.ParseTarget(e.Host)
		if err != nil || t.Session != "" || done[e.Host] {
			continue // a session the user named is the user's to close
		}
		done[e.Host] = true
		if slices.ContainsFunc(left, func(o remoting.Entry) bool { return o.Host == e.Host }) {
			continue
		}
		gg := *g
		if gg.identity == "" {
			gg.identity = e.Identity
		}
		if gg.knownHosts == "" {
			gg.knownHosts = e.KnownHosts
		}
		if err := closeImplicit(env, &gg, t); err != nil {
			fmt.Fprintf(env.Stderr, "tether: warning: %s: cannot close the implicit remoting session: %v\n", e.Host, err)
		}
	}
	return nil
}

func closeImplicit(env *Env, g *globals, t client.Target) error {
	s, err := g.setup(env)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.dialer.Timeout+10*time.Second)
	defer cancel()
	name := remoting.ImplicitName(s.dialer.Client.ID)
	conn, err := s.dial(ctx, s.display(t))
	if err != nil {
		return fmt.Errorf("%w; close it later with tether remove %s", err, s.display(t).WithSession(name))
	}
	defer conn.Close()
	_, err = conn.Call(ctx, wire.Request{Op: wire.OpRemove, Session: name, Client: s.dialer.Client})
	switch {
	case err == nil:
		fmt.Fprintf(env.Stdout, "closed the implicit remoting session %s\n", s.display(t).WithSession(name))
	case errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrClosed):
	default:
		return err
	}
	return nil
}

// helpForProxy prints the help of an imported command, read from its host
// now, when name is a proxy (its name or path). It reports false when name
// is not a proxy, leaving the help to cobra.
func helpForProxy(env *Env, name string) (bool, error) {
	m := importManifest(env)
	entries, err := m.Entries()
	if err != nil {
		return false, nil
	}
	abs, _ := filepath.Abs(name)
	var found []remoting.Entry
	for _, e := range entries {
		if e.Name == name || e.Path == name || e.Path == abs {
			found = append(found, e)
		}
	}
	if len(found) == 0 {
		return false, nil
	}
	e := found[0]
	if p, err := remoting.LookPath(env.Getenv("PATH"), name); err == nil { // the one PATH would run
		for _, f := range found {
			if f.Path == p {
				e = f
			}
		}
	}
	g := &globals{identity: e.Identity, knownHosts: e.KnownHosts, connectTimeout: "10"}
	return true, proxyHelp(context.Background(), env, g, e.Host, e.Module, e.Command)
}

// hookProxyHelp makes `tether help PROXY` show an imported command's help
// from its host; every other use of help is cobra's.
func hookProxyHelp(root *cobra.Command, env *Env) {
	root.InitDefaultHelpCmd()
	for _, hc := range root.Commands() {
		if hc.Name() != "help" {
			continue
		}
		orig := hc.Run
		hc.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				if found, _, err := root.Find(args); err != nil || found == root {
					if ok, err := helpForProxy(env, args[0]); ok {
						return err
					}
				}
			}
			if len(args) > 0 {
				if found, _, err := root.Find(args); err != nil || found == root {
					return fmt.Errorf("no help topic %q: it is neither a tether command nor an imported one (tether help lists the commands, tether import --list the imported ones)", strings.Join(args, " "))
				}
			}
			orig(c, args)
			return nil
		}
	}
}

// proxyHelp prints the help of command of module on host, as the host has it now.
func proxyHelp(ctx context.Context, env *Env, g *globals, host, module, command string) error {
	t, err := client.ParseTarget(host)
	if err != nil {
		return err
	}
	s, err := g.setup(env)
	if err != nil {
		return err
	}
	defer s.Close()
	conn, err := s.dial(ctx, s.display(t.WithSession("")))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := conn.Call(ctx, wire.Request{Op: wire.OpModuleHelp, Module: module, HelpCommand: command, Client: s.dialer.Client})
	if err != nil {
		return err
	}
	text := resp.Help
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	_, err = fmt.Fprint(env.Stdout, text)
	return err
}
