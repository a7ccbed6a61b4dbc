package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/modules"
	"github.com/tether-sh/tether/internal/remoting"
	"github.com/tether-sh/tether/internal/wire"
)

// proxyOpts are proxy's flags: --imports and --path, or, for a proxy of
// the first format, --host, --module and --command.
type proxyOpts struct {
	imports, path, host, module, command string
	usage                                func(string) error
}

// proxyCmd is what an imported command runs: its command on its host, in
// the implicit remoting session of this client there.
func proxyCmd(env *Env, g *globals) *cobra.Command {
	var o proxyOpts
	cmd := &cobra.Command{
		Use:    "proxy --imports FILE --path PROXY -- ARGS...",
		Short:  "Run an imported command (what proxies made by tether import call)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.usage = func(msg string) error { return usageError(cmd, "%s", msg) }
			return runProxy(cmd.Context(), env, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.imports, "imports", "", "the import manifest (imports.json) that describes the proxy")
	f.StringVar(&o.path, "path", "", "the proxy's path, its key in the manifest")
	// The first format of proxies named these in the script itself.
	f.StringVar(&o.host, "host", "", "the host (or HOST/SESSION) the command runs on")
	f.StringVar(&o.module, "module", "", "the module")
	f.StringVar(&o.command, "command", "", "the command of the module")
	for _, n := range []string{"host", "module", "command"} {
		f.MarkHidden(n)
	}
	return cmd
}

// maxProxyScript bounds the proxy file proxy-script reads (IsProxy's bound).
const maxProxyScript = 64 << 10

// runProxyScript is `tether proxy-script PROXY ARGS...`, what the kernel
// runs for a proxy whose #! line names this binary: the manifest and the
// proxy's key come from the proxy's exec line (the words sh would run),
// and every argument is the command's.
func runProxyScript(ctx context.Context, env *Env, script string, args []string) error {
	imports, path, err := readProxyScript(script)
	if err != nil {
		return err
	}
	return runProxy(ctx, env, &globals{connectTimeout: "10"}, proxyOpts{imports: imports, path: path}, args)
}

// readProxyScript reads --imports and --path from the exec line of the
// proxy file at script (one tether import wrote, ProxyScript).
func readProxyScript(script string) (imports, path string, err error) {
	fh, err := os.Open(script)
	if err != nil {
		return "", "", fmt.Errorf("proxy: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxProxyScript+1))
	if err != nil {
		return "", "", fmt.Errorf("proxy %s: %w", script, err)
	}
	bad := fmt.Errorf("%s is not a proxy made by tether import (no exec line with --imports and --path); import the command again", script)
	if len(b) > maxProxyScript || !strings.Contains(string(b), "\n"+remoting.ProxyMarker+" ") {
		return "", "", bad
	}
	for line := range strings.Lines(string(b)) {
		words, ok := shellWords(strings.TrimRight(line, "\n"))
		if !ok || len(words) < 3 || words[0] != "exec" || words[2] != "proxy" {
			continue
		}
		for i := 3; i+1 < len(words) && words[i] != "--"; i++ {
			switch words[i] {
			case "--imports":
				imports = words[i+1]
			case "--path":
				path = words[i+1]
			}
		}
		if imports != "" && path != "" {
			return imports, path, nil
		}
	}
	return "", "", bad
}

// shellWords splits a line of the form shquote.Quote writes: words of
// plain characters, '…' quotes, \x escapes and "…" quotes without
// expansions ("$@" is kept as the word $@). false for anything else.
func shellWords(line string) ([]string, bool) {
	var words []string
	var w strings.Builder
	in := false // inside a word
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case ' ', '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		case '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
			in = true
		case '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 || strings.ContainsAny(line[i+1:i+1+j], "\\`") {
				return nil, false
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
			in = true
		case '\\':
			if i+1 >= len(line) {
				return nil, false
			}
			w.WriteByte(line[i+1])
			i++
			in = true
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words, true
}

// runProxy is tether proxy: it runs the proxy's command with args as its
// exact argv and exits with its status (255 when it could not run it).
func runProxy(ctx context.Context, env *Env, g *globals, o proxyOpts, args []string) error {
	if o.usage == nil {
		o.usage = func(msg string) error { return errors.New(msg) }
	}
	host, module, command := o.host, o.module, o.command
	switch {
	case o.imports != "" && o.path != "":
		e, err := (&remoting.Manifest{Path: o.imports}).Lookup(o.path)
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
		return o.usage("proxy needs --imports and --path")
	}
	t, err := client.ParseTarget(host)
	if err != nil {
		return err
	}
	if len(args) == 1 && args[0] == "--tether-help" {
		return proxyHelp(ctx, env, g, host, module, command)
	}
	s, err := g.setup(env)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res, err := runProxyCommand(ctx, env, s, t, module, command, args, interrupts(env, cancel))
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
}

// runProxyCommand runs command of module on t with args as its exact argv. It uses
// the implicit session (t's session if it names one), opening it when
// missing and again, with a notice, when it was closed. While it is in use
// by another proxy of this client, the command runs in a temporary session.
func runProxyCommand(ctx context.Context, env *Env, s *session, t client.Target, module, command string, args []string, signals <-chan string) (client.Result, error) {
	host := s.display(t.WithSession(""))
	name := t.Session
	if name == "" {
		name = remoting.ImplicitName(s.dialer.Client.ID)
	}
	conn, err := s.dial(ctx, host)
	if err != nil {
		return client.Result{}, err
	}
	defer conn.Close()
	argv, key := modules.EncodeArgv(append([]string{command}, args...))
	spec := client.RunSpec{
		Request: wire.Request{Module: module, Argv: argv, ArgvEncoding: key},
		Stdin:   forwardedStdin(env.Stdin), Stdout: env.Stdout, Stderr: env.Stderr, Notify: env.Stderr,
		Signals: signals,
	}
	unlock, ok := remoting.LockImplicit(filepath.Join(configDir(env), "implicit"), s.full(host.WithSession(name)))
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
