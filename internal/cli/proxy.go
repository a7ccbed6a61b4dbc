package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/modules"
	"github.com/tether-sh/tether/internal/wire"
)

// proxyCmd is what an imported command runs: its command on its host, in
// the implicit remoting session of this client there.
func proxyCmd(env *Env, g *globals) *cobra.Command {
	var imports, path, host, module, command string
	cmd := &cobra.Command{
		Use:    "proxy --imports FILE --path PROXY -- ARGS...",
		Short:  "Run an imported command (what proxies made by tether import call)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case imports != "" && path != "":
				e, err := proxyEntry(imports, path)
				if err != nil {
					return err
				}
				host, module, command = e.Host, e.Module, e.Command
				if g.identity == "" {
					g.identity = e.Identity
				}
				if g.knownHosts == "" {
					g.knownHosts = e.KnownHosts
				}
			case host != "" && module != "" && command != "":
				// A proxy of the first format: its script names these. They
				// came from the host; hold them to the host's rules again.
				if !modules.ValidModuleName(module) || !modules.ValidCommandName(command) {
					return fmt.Errorf("this proxy was made by an older tether import and names the module %q and command %q, which break the module rules; remove it (tether import --remove) and import again", module, command)
				}
			default:
				return usageError(cmd, "proxy needs --imports and --path")
			}
			t, err := client.ParseTarget(host)
			if err != nil {
				return err
			}
			if len(args) == 1 && args[0] == "--tether-help" {
				return proxyHelp(cmd.Context(), env, g, host, module, command)
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			res, err := runProxy(ctx, env, s, t, module, command, args, interrupts(env, cancel))
			if err != nil {
				fmt.Fprintf(env.Stderr, "tether: %v\n", describeErr(s.display(t), err))
				return exitError{255}
			}
			if res.Dropped > 0 {
				fmt.Fprintf(env.Stderr, "tether: %d bytes of output were dropped (OutputBufferingMode drop)\n", res.Dropped)
			}
			if res.Message != "" {
				fmt.Fprintf(env.Stderr, "tether: %s: %s\n", s.display(t).HostString(), res.Message)
			}
			if res.ExitCode != 0 {
				return exitError{res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&imports, "imports", "", "the import manifest (imports.json) that describes the proxy")
	f.StringVar(&path, "path", "", "the proxy's path, its key in the manifest")
	// The first format of proxies named these in the script itself.
	f.StringVar(&host, "host", "", "the host (or HOST/SESSION) the command runs on")
	f.StringVar(&module, "module", "", "the module")
	f.StringVar(&command, "command", "", "the command of the module")
	for _, n := range []string{"host", "module", "command"} {
		f.MarkHidden(n)
	}
	return cmd
}

// proxyEntry is the manifest's entry for the proxy at path, checked again
// against the module rules (the manifest is only as good as its writer).
func proxyEntry(manifest, path string) (importEntry, error) {
	m := &importManifest{Path: manifest}
	entries, err := m.entries()
	if err != nil {
		return importEntry{}, err
	}
	for _, e := range entries {
		if e.Path != path {
			continue
		}
		if !modules.ValidModuleName(e.Module) || !modules.ValidCommandName(e.Command) {
			return e, fmt.Errorf("%s: the entry for %s names the module %q and command %q, which break the module rules; import it again", manifest, path, e.Module, e.Command)
		}
		return e, nil
	}
	return importEntry{}, fmt.Errorf("%s is not in %s any more; import it again (tether import TARGET MODULE) or delete it", path, manifest)
}

// implicitName is the session this client keeps on each host for implicit
// remoting.
func implicitName(clientID string) string {
	return "implicit-" + clientID[:min(8, len(clientID))]
}

var unsafeFileChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9._@-]+`) })

// lockImplicit takes this client's lock on its implicit session on host, so
// that two proxies running at once (xargs -P) do not both use it: the
// session runs one command at a time. ok is false when another proxy holds it.
func lockImplicit(env *Env, key string) (unlock func(), ok bool) {
	dir := filepath.Join(configDir(env), "implicit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}, true // no lock to be had: the host refuses a busy session anyway
	}
	f, err := os.OpenFile(filepath.Join(dir, unsafeFileChars().ReplaceAllString(key, "_")+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}, true
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// runProxy runs command of module on t with args as its exact argv. It uses
// the implicit session (t's session if it names one), opening it when
// missing and again, with a notice, when it was closed. While it is in use
// by another proxy of this client, the command runs in a temporary session.
func runProxy(ctx context.Context, env *Env, s *session, t client.Target, module, command string, args []string, signals <-chan string) (client.Result, error) {
	host := s.display(t.WithSession(""))
	name := t.Session
	if name == "" {
		name = implicitName(s.dialer.Client.ID)
	}
	conn, err := s.dial(ctx, host)
	if err != nil {
		return client.Result{}, err
	}
	defer conn.Close()
	argv, key := modules.EncodeArgv(append([]string{command}, args...))
	spec := client.RunSpec{
		Request: wire.Request{Module: module, Argv: argv, ArgvEncoding: key},
		Stdin:   env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr, Notify: env.Stderr,
		Signals: signals,
	}
	unlock, ok := lockImplicit(env, s.full(host.WithSession(name)))
	if !ok {
		spec.Target = host
		return s.dialer.Run(ctx, conn, spec)
	}
	defer unlock()
	spec.Target = host.WithSession(name)
	for attempt := 0; ; attempt++ {
		res, err := s.dialer.Run(ctx, conn, spec)
		var re *client.RemoteError
		if err == nil || !errors.As(err, &re) || attempt > 0 {
			return res, err
		}
		switch {
		case re.Code == wire.CodeBusy || re.Code == wire.CodeDisconnected:
			// Still running a command of a proxy that was killed, or
			// taken over: this call runs on its own.
			spec.Target = host
			return s.dialer.Run(ctx, conn, spec)
		case re.Code == wire.CodeNotFound && strings.Contains(re.Message, name):
			if err := openImplicit(ctx, conn, s, name); err != nil {
				return res, err
			}
		case re.Code == wire.CodeClosed && strings.Contains(re.Message, name):
			// A Broken session (its host process died) must be removed first.
			conn.Call(ctx, wire.Request{Op: wire.OpRemove, Session: name, Client: s.dialer.Client})
			if err := openImplicit(ctx, conn, s, name); err != nil {
				return res, err
			}
			why := re.Message
			if i := strings.Index(why, " is "); i >= 0 {
				why = why[i+len(" is "):]
			}
			fmt.Fprintf(env.Stderr, "tether: implicit session on %s was closed (%s); opened a new one\n", s.display(host).HostString(), why)
		default:
			return res, err
		}
	}
}

func openImplicit(ctx context.Context, conn *client.Conn, s *session, name string) error {
	_, err := conn.Call(ctx, wire.Request{Op: wire.OpNew, Session: name, Client: s.dialer.Client})
	var re *client.RemoteError
	if errors.As(err, &re) && re.Code == wire.CodeExists {
		return nil // another proxy opened it just now
	}
	if err != nil {
		return fmt.Errorf("cannot open the implicit remoting session %s: %w", name, err)
	}
	return nil
}
