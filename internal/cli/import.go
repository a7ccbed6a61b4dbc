package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/modules"
	"github.com/tether-sh/tether/internal/wire"
)

// proxyMarker is in every proxy file, so that tether never overwrites or
// deletes a file it did not make.
const proxyMarker = "# tether proxy:"

var validPrefix = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._+]{0,32}$`) })

func importCmd(env *Env, g *globals) *cobra.Command {
	var prefix, dir string
	var force, list, remove bool
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
			m := &importManifest{Path: filepath.Join(configDir(env), "imports.json")}
			switch {
			case list:
				if len(args) > 0 {
					return usageError(cmd, "--list takes no arguments")
				}
				return listImports(env, m)
			case remove:
				if len(args) == 0 {
					return usageError(cmd, "--remove needs TARGET MODULE or proxy names")
				}
				return removeImports(env, g, m, args, prefix, cmd.Flags().Changed("prefix"))
			}
			if len(args) != 2 {
				return usageError(cmd, "import needs TARGET and MODULE")
			}
			if !validPrefix().MatchString(prefix) {
				return fmt.Errorf("bad --prefix %q: use up to 32 letters, digits, '.', '_' or '+'", prefix)
			}
			if dir == "" {
				dir = defaultProxyDir(env)
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			return doImport(cmd.Context(), env, g, m, args[0], args[1], prefix, abs, force)
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "prefix for the local command names")
	f.StringVar(&dir, "dir", "", "directory for the proxies (default ~/.local/share/tether/bin)")
	f.BoolVar(&force, "force", false, "replace proxies of the same name from another host, module or version")
	f.BoolVar(&list, "list", false, "list the imported commands")
	f.BoolVar(&remove, "remove", false, "remove imported commands")
	return cmd
}

func defaultProxyDir(env *Env) string {
	if x := env.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "tether", "bin")
	}
	return filepath.Join(homeDir(env), ".local", "share", "tether", "bin")
}

// importEntry is one proxy in the manifest.
type importEntry struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Host       string    `json:"host"` // full address, with the login name
	Module     string    `json:"module"`
	Version    string    `json:"version"`
	Command    string    `json:"command"`
	Prefix     string    `json:"prefix,omitempty"`
	Identity   string    `json:"identity,omitempty"`
	KnownHosts string    `json:"known_hosts,omitempty"`
	Imported   time.Time `json:"imported"`
}

// origin says where a proxy comes from, for clashes and listings.
func (e importEntry) origin() string {
	return fmt.Sprintf("%s of module %s %s on %s", e.Command, e.Module, e.Version, e.Host)
}

func (e importEntry) sameSource(o importEntry) bool {
	return e.Host == o.Host && e.Module == o.Module && e.Version == o.Version && e.Command == o.Command
}

// importManifest is ~/.config/tether/imports.json, flock'd and written
// atomically like the session registry.
type importManifest struct {
	Path string
}

type importFile struct {
	Imports []importEntry `json:"imports"`
}

func (m *importManifest) locked(fn func(*importFile) (bool, error)) error {
	if err := os.MkdirAll(filepath.Dir(m.Path), 0o700); err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	lf, err := os.OpenFile(m.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("imports: lock: %w", err)
	}
	var f importFile
	b, err := os.ReadFile(m.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("imports: %w", err)
	default:
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s is damaged (%v); move it away to start a new one", m.Path, err)
		}
	}
	changed, err := fn(&f)
	if err != nil || !changed {
		return err
	}
	sort.Slice(f.Imports, func(i, j int) bool {
		if f.Imports[i].Name != f.Imports[j].Name {
			return f.Imports[i].Name < f.Imports[j].Name
		}
		return f.Imports[i].Path < f.Imports[j].Path
	})
	out, _ := json.MarshalIndent(f, "", "  ")
	return impWriteAtomic(m.Path, append(out, '\n'), 0o600)
}

func (m *importManifest) entries() ([]importEntry, error) {
	var out []importEntry
	err := m.locked(func(f *importFile) (bool, error) {
		out = f.Imports
		return false, nil
	})
	return out, err
}

// writeAtomic replaces path with data: a temporary file, fsync, rename.
func impWriteAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// shQuote quotes s for /bin/sh.
func impShQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func doImport(ctx context.Context, env *Env, g *globals, m *importManifest, targetArg, module, prefix, dir string, force bool) error {
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
			return fmt.Errorf("module %s on %s is broken: %s", module, s.display(t).HostString(), safeText(strings.Join(broken, "; ")))
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
	if err := checkModuleInfo(*info); err != nil {
		return fmt.Errorf("%s: %w; nothing imported", s.display(t).HostString(), err)
	}
	host := s.full(t)
	var made []importEntry
	for _, c := range info.Commands {
		name := modules.ProxyName(c, prefix)
		if !modules.ValidCommandName(name) {
			return fmt.Errorf("%s with --prefix %q gives the name %q, which cannot be a command", c, prefix, name)
		}
		made = append(made, importEntry{
			Name: name, Path: filepath.Join(dir, name), Host: host, Module: info.Name, Version: info.Version,
			Command: c, Prefix: prefix, Identity: identity, KnownHosts: knownHosts, Imported: time.Now().UTC(),
		})
	}
	if len(made) == 0 {
		return fmt.Errorf("module %s on %s has no commands", module, s.display(t).HostString())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err = m.locked(func(f *importFile) (bool, error) {
		var clashes []string // one line each: the error lists them one per line
		for _, e := range made {
			i := slices.IndexFunc(f.Imports, func(o importEntry) bool { return o.Path == e.Path })
			switch {
			case i >= 0 && !f.Imports[i].sameSource(e):
				clashes = append(clashes, fmt.Sprintf("%s is already imported: %s", e.Path, f.Imports[i].origin()))
			case i < 0 && impFileExists(e.Path):
				clashes = append(clashes, fmt.Sprintf("%s exists and was not made by tether import", e.Path))
			}
		}
		if len(clashes) > 0 && !force {
			return false, fmt.Errorf("nothing imported, %s taken:\n  %s\nuse --force to replace, or --prefix to choose other names",
				plural(len(clashes), "name is", "names are"), strings.Join(clashes, "\n  "))
		}
		for _, e := range made {
			if err := impWriteAtomic(e.Path, []byte(proxyScript(exe, m.Path, e)), 0o755); err != nil {
				return true, fmt.Errorf("write proxy: %w", err)
			}
			f.Imports = slices.DeleteFunc(f.Imports, func(o importEntry) bool { return o.Path == e.Path })
			f.Imports = append(f.Imports, e)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "imported %s of module %s %s from %s into %s:\n", plural(len(made), "command", "commands"), info.Name, info.Version, s.display(t), dir)
	for _, e := range made {
		fmt.Fprintf(env.Stdout, "  %-24s %s\n", e.Name, e.Command)
		if p, err := impLookPath(env, e.Name); err == nil && p != e.Path {
			fmt.Fprintf(env.Stderr, "tether: warning: %s is also %s, which comes first in PATH\n", e.Name, p)
		}
	}
	if !impOnPath(env, dir) {
		fmt.Fprintf(env.Stdout, "%s is not in your PATH; add this line to your shell's startup file:\n  export PATH=%s:\"$PATH\"\n", dir, impShQuote(dir))
	}
	return nil
}

// maxImportCommands bounds the proxies one import makes: a host cannot fill
// the client's disk with them.
const maxImportCommands = 1024

// checkModuleInfo holds what a host says about a module to the host's own
// rules (internal/modules): the names become file names and the text is
// shown on the terminal, and the host is not trusted to keep its rules.
func checkModuleInfo(mi wire.ModuleInfo) error {
	if !modules.ValidModuleName(mi.Name) {
		return fmt.Errorf("the host sent the module name %q, which breaks the module rules (1-64 letters, digits, '.', '_' or '-')", mi.Name)
	}
	if !modules.ValidVersion(mi.Version) {
		return fmt.Errorf("the host sent the version %q for module %s, which breaks the module rules (one word of 1-64 printable characters)", mi.Version, mi.Name)
	}
	if len(mi.Commands) > maxImportCommands {
		return fmt.Errorf("module %s has %d commands, more than the %d one import makes", mi.Name, len(mi.Commands), maxImportCommands)
	}
	seen := map[string]bool{}
	for _, c := range mi.Commands {
		if !modules.ValidCommandName(c) {
			return fmt.Errorf("the host sent the command name %q in module %s, which cannot be a command (1-128 letters, digits, '.', '_', '+' or '-', not starting with a punctuation mark)", c, mi.Name)
		}
		if seen[c] {
			return fmt.Errorf("the host sent the command %s of module %s twice", c, mi.Name)
		}
		seen[c] = true
	}
	return nil
}

// proxyScript is the file of a proxy. It holds nothing the host sent but
// the proxy's own name (checked above); where the command comes from is
// in the manifest, which the proxy reads as data when it runs.
func proxyScript(exe, manifest string, e importEntry) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "%s %s (made by tether import; tether import --list shows where it comes from)\n", proxyMarker, e.Name)
	fmt.Fprintf(&b, "# help: %s --tether-help; remove: tether import --remove %s\n", e.Name, e.Name)
	fmt.Fprintf(&b, "exec %s proxy --imports %s --path %s -- \"$@\"\n", impShQuote(exe), impShQuote(manifest), impShQuote(e.Path))
	return b.String()
}

// oldProxy reports whether the proxy file at p is of the first format,
// which named host, module and command in the script itself.
func oldProxy(p string) bool {
	b, err := os.ReadFile(p)
	return err == nil && len(b) < 64<<10 && strings.Contains(string(b), " proxy --host ")
}

// safeText is s as it is when it is all printable, else quoted, so that
// text from a host cannot drive the terminal.
func safeText(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

// plural is "1 command" or "2 commands".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func impFileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// isProxy reports whether the file at p was made by tether import.
func impIsProxy(p string) bool {
	b, err := os.ReadFile(p)
	return err == nil && len(b) < 64<<10 && strings.Contains(string(b), "\n"+proxyMarker+" ")
}

func impPathDirs(env *Env) []string {
	return filepath.SplitList(env.Getenv("PATH"))
}

func impOnPath(env *Env, dir string) bool {
	for _, d := range impPathDirs(env) {
		if filepath.Clean(d) == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

func impLookPath(env *Env, name string) (string, error) {
	for _, d := range impPathDirs(env) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func listImports(env *Env, m *importManifest) error {
	entries, err := m.entries()
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
		if oldProxy(e.Path) {
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

func removeImports(env *Env, g *globals, m *importManifest, args []string, prefix string, byPrefix bool) error {
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
	var removed []importEntry
	err := m.locked(func(f *importFile) (bool, error) {
		keep := f.Imports[:0]
		for _, e := range f.Imports {
			match := slices.Contains(args, e.Name) || slices.Contains(args, e.Path)
			if host != "" && e.Host == host && e.Module == args[1] && (!byPrefix || e.Prefix == prefix) {
				match = true
			}
			if !match {
				keep = append(keep, e)
				continue
			}
			if impIsProxy(e.Path) {
				if err := os.Remove(e.Path); err != nil {
					return false, err
				}
			}
			removed = append(removed, e)
		}
		f.Imports = keep
		return len(removed) > 0, nil
	})
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		return fmt.Errorf("no imported command matches %s (tether import --list shows them)", strings.Join(args, " "))
	}
	for _, e := range removed {
		fmt.Fprintf(env.Stdout, "removed %s (%s)\n", e.Path, e.origin())
	}
	return closeUnusedImplicit(env, g, m, removed)
}

// closeUnusedImplicit closes the implicit session on each host that the
// removed proxies used and no proxy left uses, so that removing the last
// proxy leaves no session host running. A host that cannot be reached is
// named with the command that closes it later; it does not fail the removal.
func closeUnusedImplicit(env *Env, g *globals, m *importManifest, removed []importEntry) error {
	left, err := m.entries()
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
		if slices.ContainsFunc(left, func(o importEntry) bool { return o.Host == e.Host }) {
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
	name := implicitName(s.dialer.Client.ID)
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
	m := &importManifest{Path: filepath.Join(configDir(env), "imports.json")}
	entries, err := m.entries()
	if err != nil {
		return false, nil
	}
	abs, _ := filepath.Abs(name)
	var found []importEntry
	for _, e := range entries {
		if e.Name == name || e.Path == name || e.Path == abs {
			found = append(found, e)
		}
	}
	if len(found) == 0 {
		return false, nil
	}
	e := found[0]
	if p, err := impLookPath(env, name); err == nil { // the one PATH would run
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
