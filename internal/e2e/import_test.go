package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// writeNetadmin writes the test module netadmin VERSION into root.
func writeNetadmin(t testing.TB, root, version string) {
	t.Helper()
	m := filepath.Join(root, "netadmin")
	files := map[string]string{
		"module.toml":     fmt.Sprintf("name = \"netadmin\"\nversion = %q\ndescription = \"network administration, v%s\"\n", version, version),
		"bin/get-version": "#!/bin/sh\necho \"netadmin " + version + "\"\n",
		"bin/get-route":   "#!/bin/sh\necho \"route table of v" + version + " in $(basename \"$PWD\")\"\n",
		// Each argument on a line of its own, hex-encoded, so that every byte shows.
		"bin/hexargs":        "#!/bin/sh\necho \"argc=$#\"\nfor a in \"$@\"; do echo \"$(printf '%s' \"$a\" | od -An -v -tx1 | tr -d ' \\n')\"; done\n",
		"bin/upcase":         "#!/bin/sh\ntr a-z A-Z\n",
		"bin/exit-with":      "#!/bin/sh\necho \"exiting $1\" >&2\nexit \"$1\"\n",
		"functions.sh":       "say-hello() { echo \"hello $1 from v" + version + " ($(_where))\"; }\n_where() { basename \"$PWD\"; }\n",
		"help/get-route.txt": "get-route: shows the routing table (v" + version + ")\n",
	}
	for name, content := range files {
		p := filepath.Join(m, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// implicitEnv is the environment of a plain shell of the client machine
// with the proxies' directory in PATH.
func (c *Client) impEnv(bin string) []string {
	return append([]string{
		"HOME=" + c.Home,
		"USER=" + c.User,
		"PATH=" + bin + ":" + os.Getenv("PATH"),
		"SSH_AUTH_SOCK=",
	}, c.Env...)
}

// sh runs script with /bin/sh -c as a user of the proxies would.
func (c *Client) impSh(bin string, stdin io.Reader, script string, args ...string) Result {
	c.t.Helper()
	return c.impExec(bin, stdin, "/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
}

func (c *Client) impExec(bin string, stdin io.Reader, prog string, args ...string) Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = c.impEnv(bin)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("%s %q: %v", prog, args, err)
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

func (c *Client) impClientID() string {
	b, _ := os.ReadFile(filepath.Join(c.Home, ".config", "tether", "client-id"))
	return strings.TrimSpace(string(b))
}

type implicitSetup struct {
	c          *Client
	a, b       *Agent
	modA, modB string
	bin        string
}

func setupImplicit(t testing.TB) *implicitSetup {
	t.Helper()
	s := &implicitSetup{c: NewClient(t)}
	s.modA, s.modB = ShortTempDir(t), ShortTempDir(t)
	writeNetadmin(t, s.modA, "1.0")
	writeNetadmin(t, s.modB, "2.0")
	// A broken module next to netadmin on A.
	os.MkdirAll(filepath.Join(s.modA, "broken", "bin"), 0o755)
	os.WriteFile(filepath.Join(s.modA, "broken", "module.toml"), []byte("name = \"broken\"\nversion = \n"), 0o644)
	os.WriteFile(filepath.Join(s.modA, "broken", "bin", "x"), []byte("#!/bin/sh\n"), 0o755)
	s.a = StartAgent(t, AgentOptions{Keys: []string{s.c.PubKey()}, Args: []string{"--modules", s.modA}})
	s.b = StartAgent(t, AgentOptions{Keys: []string{s.c.PubKey()}, Args: []string{"--modules", s.modB}})
	s.bin = filepath.Join(ShortTempDir(t), "bin")
	return s
}

func TestImplicitRemoting(t *testing.T) {
	s := setupImplicit(t)
	c, bin := s.c, s.bin

	t.Run("import", func(t *testing.T) {
		out := c.MustRun("import", "--prefix", "a", "--dir", bin, s.a.Host(), "netadmin")
		for _, want := range []string{"imported 6 commands of module netadmin 1.0", "get-aroute", "say-ahello", "is not in your PATH", "export PATH="} {
			if !strings.Contains(out, want) {
				t.Fatalf("import output lacks %q:\n%s", want, out)
			}
		}
		c.MustRun("import", "--prefix", "b", "--dir", bin, s.b.Host(), "netadmin")
		// Importing the same again is fine.
		c.MustRun("import", "--prefix", "b", "--dir", bin, s.b.Host(), "netadmin")
	})

	t.Run("side by side", func(t *testing.T) {
		r := c.impSh(bin, nil, `get-aversion && get-bversion && get-aroute && get-broute`)
		want := "netadmin 1.0\nnetadmin 2.0\nroute table of v1.0 in netadmin\nroute table of v2.0 in netadmin\n"
		if r.Code != 0 || r.Stdout != want {
			t.Fatalf("exit %d\nstdout %q\nwant   %q\nstderr %s", r.Code, r.Stdout, want, r.Stderr)
		}
		r = c.impSh(bin, nil, `get-aversion > "$1" & get-bversion; wait`, filepath.Join(ShortTempDir(t), "a.out"))
		if r.Code != 0 || r.Stdout != "netadmin 2.0\n" {
			t.Fatalf("concurrent: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("clash", func(t *testing.T) {
		r := c.Run("import", "--prefix", "a", "--dir", bin, s.b.Host(), "netadmin")
		if r.Code != 255 || !strings.Contains(r.Stderr, "already imported") || !strings.Contains(r.Stderr, "--force") {
			t.Fatalf("clash: exit %d %q", r.Code, r.Stderr)
		}
		if out := c.impSh(bin, nil, "get-aversion").Stdout; out != "netadmin 1.0\n" {
			t.Fatalf("a refused import changed a proxy: %q", out)
		}
		// A file tether did not make is not overwritten either.
		os.WriteFile(filepath.Join(bin, "get-cversion"), []byte("#!/bin/sh\necho mine\n"), 0o755)
		r = c.Run("import", "--prefix", "c", "--dir", bin, s.b.Host(), "netadmin")
		if r.Code != 255 || !strings.Contains(r.Stderr, "not made by tether import") {
			t.Fatalf("foreign file: exit %d %q", r.Code, r.Stderr)
		}
		// --force replaces.
		c.MustRun("import", "--force", "--prefix", "c", "--dir", bin, s.b.Host(), "netadmin")
		if out := c.impSh(bin, nil, "get-cversion").Stdout; out != "netadmin 2.0\n" {
			t.Fatalf("forced import: %q", out)
		}
	})

	t.Run("list and remove", func(t *testing.T) {
		out := c.MustRun("import", "--list")
		for _, want := range []string{"get-aversion", "get-bversion", "get-cversion", s.a.Host(), s.b.Host(), "1.0", "2.0"} {
			if !strings.Contains(out, want) {
				t.Fatalf("--list lacks %q:\n%s", want, out)
			}
		}
		out = c.MustRun("import", "--remove", "--prefix", "c", s.b.Host(), "netadmin")
		if strings.Count(out, "removed ") != 6 {
			t.Fatalf("remove:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(bin, "get-cversion")); !os.IsNotExist(err) {
			t.Fatalf("proxy still there: %v", err)
		}
		if out := c.MustRun("import", "--list"); strings.Contains(out, "get-cversion") || !strings.Contains(out, "get-bversion") {
			t.Fatalf("--list after remove:\n%s", out)
		}
	})

	t.Run("arguments", func(t *testing.T) {
		args := []string{"a b", "$(rm -rf x)", ";", "", "\n", "\xff\xfe bytes", "'\"\\*", "--tether-help-not"}
		r := c.impExec(bin, nil, filepath.Join(bin, "ahexargs"), args...)
		want := fmt.Sprintf("argc=%d\n", len(args))
		for _, a := range args {
			want += hex.EncodeToString([]byte(a)) + "\n"
		}
		if r.Code != 0 || r.Stdout != want {
			t.Fatalf("exit %d\ngot  %q\nwant %q\nstderr %s", r.Code, r.Stdout, want, r.Stderr)
		}
		// Through a shell script, as a user would.
		r = c.impSh(bin, nil, `ahexargs "a b" '$(rm -rf x)' ';'`)
		if r.Stdout != "argc=3\n612062\n2428726d202d7266207829\n3b\n" {
			t.Fatalf("from sh: %q %s", r.Stdout, r.Stderr)
		}
	})

	t.Run("streams and status", func(t *testing.T) {
		r := c.impSh(bin, strings.NewReader("piped through\n"), "aupcase")
		if r.Code != 0 || r.Stdout != "PIPED THROUGH\n" {
			t.Fatalf("stdin: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
		r = c.impSh(bin, nil, `exit-awith 7; echo "status $?"`)
		if r.Stdout != "status 7\n" || r.Stderr != "exiting 7\n" {
			t.Fatalf("exit status: %q %q", r.Stdout, r.Stderr)
		}
		r = c.impSh(bin, nil, "say-ahello world")
		if r.Code != 0 || r.Stdout != "hello world from v1.0 (netadmin)\n" {
			t.Fatalf("function: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
		// Many at once, from xargs: each gets its own arguments.
		r = c.impSh(bin, nil, `printf '%s\n' w x y z | xargs -P 4 -n 1 ahexargs`)
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		sort.Strings(lines)
		if r.Code != 0 || strings.Join(lines, " ") != "77 78 79 7a argc=1 argc=1 argc=1 argc=1" {
			t.Fatalf("xargs -P: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
		// All of that used one implicit session per host.
		out := c.MustRun("list", s.a.Host())
		name := "implicit-" + c.impClientID()[:8]
		if strings.Count(out, "implicit-") != 1 || !strings.Contains(out, name) {
			t.Fatalf("sessions on A:\n%s", out)
		}
	})

	t.Run("module list", func(t *testing.T) {
		out := c.MustRun("module", "list", s.a.Host()+","+s.b.Host())
		for _, want := range []string{
			s.a.Host(), s.b.Host(), "netadmin", "1.0", "2.0", "get-route", "say-hello",
			"BROKEN", filepath.Join(s.modA, "broken", "module.toml") + ": line 2",
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("module list lacks %q:\n%s", want, out)
			}
		}
		out = c.MustRun("module", "list", "--json", s.a.Host())
		var n int
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var m struct{ Host, Name, Version, Error string }
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			if m.Name == "broken" && strings.Contains(m.Error, "module.toml") || m.Name == "netadmin" && m.Version == "1.0" {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("module list --json:\n%s", out)
		}
	})

	t.Run("help from the host", func(t *testing.T) {
		proxy := filepath.Join(bin, "get-aroute")
		r := c.impExec(bin, nil, proxy, "--tether-help")
		if r.Code != 0 || r.Stdout != "get-route: shows the routing table (v1.0)\n" {
			t.Fatalf("--tether-help: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
		os.WriteFile(filepath.Join(s.modA, "netadmin", "help", "get-route.txt"), []byte("edited on the host\n"), 0o644)
		if r := c.impExec(bin, nil, proxy, "--tether-help"); r.Stdout != "edited on the host\n" {
			t.Fatalf("after editing: %q %s", r.Stdout, r.Stderr)
		}
		r = c.impExec(bin, nil, filepath.Join(bin, "ahexargs"), "--tether-help")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no help on "+s.a.Host()+" for hexargs; update the module there") {
			t.Fatalf("no help: exit %d %q", r.Code, r.Stderr)
		}
	})

	t.Run("closed session is reopened", func(t *testing.T) {
		name := "implicit-" + c.impClientID()[:8]
		c.MustRun("remove", s.a.Host()+"/"+name)
		r := c.impSh(bin, nil, "get-aversion")
		if r.Code != 0 || r.Stdout != "netadmin 1.0\n" {
			t.Fatalf("after remove: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "tether: implicit session on "+s.a.Host()+" was closed (") || !strings.Contains(r.Stderr, "opened a new one") {
			t.Fatalf("no notice: %q", r.Stderr)
		}
		r = c.impSh(bin, nil, "get-aversion")
		if r.Code != 0 || r.Stderr != "" {
			t.Fatalf("next call: exit %d %q", r.Code, r.Stderr)
		}
		// The agent restarted and the session host is gone: Broken.
		s.a.Stop()
		s.a.Restart()
		r = c.impSh(bin, nil, "get-aversion")
		if r.Code != 0 || r.Stdout != "netadmin 1.0\n" || !strings.Contains(r.Stderr, "opened a new one") {
			t.Fatalf("after the agent restarted without it: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})
}

// TestImplicitHelpCommand needs hookProxyHelp(root, env) in cli.newRoot.
func TestImplicitHelpCommand(t *testing.T) {
	s := setupImplicit(t)
	c, bin := s.c, s.bin
	c.MustRun("import", "--prefix", "a", "--dir", bin, s.a.Host(), "netadmin")
	r := c.Run("help", "get-aroute")
	if strings.Contains(r.Stdout, "Unknown help topic") {
		t.Fatal("tether help does not know proxies: add hookProxyHelp(root, env) to newRoot in internal/cli/cli.go")
	}
	if r.Code != 0 || r.Stdout != "get-route: shows the routing table (v1.0)\n" {
		t.Fatalf("tether help: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	os.WriteFile(filepath.Join(s.modA, "netadmin", "help", "get-route.txt"), []byte("edited on the host\n"), 0o644)
	if out := c.MustRun("help", "get-aroute"); out != "edited on the host\n" {
		t.Fatalf("after editing: %q", out)
	}
	r = c.Run("help", "ahexargs")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no help on "+s.a.Host()+" for hexargs; update the module there") {
		t.Fatalf("no help: exit %d %q", r.Code, r.Stderr)
	}
	// tether's own help is untouched.
	if out := c.MustRun("help", "invoke"); !strings.Contains(out, "tether invoke") {
		t.Fatalf("help invoke: %q", out)
	}
}

// BenchmarkProxyCall is one call of an imported command (a proxy): it runs
// in the implicit session, which stays open between calls.
func BenchmarkProxyCall(b *testing.B) {
	s := setupImplicit(b)
	s.c.MustRun("import", "--dir", s.bin, s.a.Host(), "netadmin")
	proxy := filepath.Join(s.bin, "get-version")
	env := s.c.impEnv(s.bin)
	run := func() {
		cmd := exec.Command(proxy)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil || string(out) != "netadmin 1.0\n" {
			b.Fatalf("%v: %s", err, out)
		}
	}
	run() // opens the implicit session
	b.ResetTimer()
	for b.Loop() {
		run()
	}
}

// BenchmarkInvokeTemporary is the same round trip without implicit
// remoting: tether invoke HOST true, in a temporary session.
func BenchmarkInvokeTemporary(b *testing.B) {
	s := setupImplicit(b)
	s.c.MustRun("invoke", s.a.Host(), "true")
	b.ResetTimer()
	for b.Loop() {
		cmd := s.c.Command(context.Background(), "invoke", s.a.Host(), "true")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}

// hostileHost is an SSH server in this process that speaks Tether's wire
// protocol as a malicious host would: module.list answers with modules, and
// every help text is help; every other request is refused.
func hostileHost(t testing.TB, mods []wire.ModuleInfo, help string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
	}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serve := func(ch ssh.Channel) {
		defer ch.Close()
		wc := wire.NewConn(ch, 0)
		if _, err := wc.Handshake(wire.Hello{Software: "hostile"}); err != nil {
			return
		}
		var req wire.Request
		if err := wc.ReadJSON(wire.TRequest, &req); err != nil {
			return
		}
		switch req.Op {
		case "module.list":
			wc.WriteJSON(wire.TResponse, wire.Response{OK: true, Modules: mods})
		case "module.help":
			wc.WriteJSON(wire.TResponse, wire.Response{OK: true, Help: help})
		default:
			wc.WriteJSON(wire.TResponse, wire.Response{Error: wire.Errorf(wire.CodeBadRequest, "hostile host: no %s", req.Op)})
		}
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					if nch.ChannelType() != "tether@tether.sh" {
						nch.Reject(ssh.UnknownChannelType, "no")
						continue
					}
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					go ssh.DiscardRequests(creqs)
					go serve(ch)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestImportHostileHost: what a host says about its modules becomes file
// names and proxy files on the client. A host that breaks the module rules
// is refused with a clear error and no file; text that keeps them (a
// printable version word with shell syntax in it) never reaches anything a
// shell interprets. Each payload would touch the marker if it ran.
func TestImportHostileHost(t *testing.T) {
	c := NewClient(t)
	work := ShortTempDir(t)
	marker := filepath.Join(work, "PWNED")
	inj := "touch " + marker
	good := []string{"get-route"}
	cases := []struct {
		name    string
		mod     wire.ModuleInfo
		refused string // "" when the import is to succeed
	}{
		{"newline in version", wire.ModuleInfo{Name: "netadmin", Version: "1.0\n" + inj + "\n#", Commands: good}, "version"},
		{"command substitution in version", wire.ModuleInfo{Name: "netadmin", Version: "1.0$(" + inj + ")", Commands: good}, "version"},
		{"NUL in version", wire.ModuleInfo{Name: "netadmin", Version: "1.0\x00", Commands: good}, "version"},
		{"escape in version", wire.ModuleInfo{Name: "netadmin", Version: "1.0\x1b]0;x\x07", Commands: good}, "version"},
		{"newline in command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"get-route\n" + inj}}, "command name"},
		{"substitution in command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"x$(" + inj + ")"}}, "command name"},
		{"backquotes in command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"x`" + inj + "`"}}, "command name"},
		{"quote in command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"x'; " + inj + "; '"}}, "command name"},
		{"path in command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"../../x"}}, "command name"},
		{"dot-dot command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{".."}}, "command name"},
		{"NUL in command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"x\x00y"}}, "command name"},
		{"twice the same command", wire.ModuleInfo{Name: "netadmin", Version: "1.0", Commands: []string{"a", "a"}}, "twice"},
		// One word, printable: within the rules, so imported — and harmless.
		// (A relative marker: the version has at most 64 characters.)
		{"shell syntax within the rules", wire.ModuleInfo{Name: "netadmin", Version: "1$(touch${IFS}PWNED)`touch${IFS}PWNED`'\"", Commands: good}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Every hostile host has a key of its own, and a port an
			// earlier case's host may have had: no known host to clash with.
			os.Remove(filepath.Join(c.Home, ".config", "tether", "known_hosts"))
			addr := hostileHost(t, []wire.ModuleInfo{tc.mod}, "help $("+inj+")\n")
			bin := filepath.Join(ShortTempDir(t), "bin")
			r := c.Run("import", "--dir", bin, addr, "netadmin")
			files, _ := os.ReadDir(bin)
			if tc.refused != "" {
				if r.Code != 255 || !strings.Contains(r.Stderr, tc.refused) || !strings.Contains(r.Stderr, "nothing imported") {
					t.Errorf("import from a host breaking the rules: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
				}
				last := r.Stderr[strings.LastIndex(strings.TrimSuffix(r.Stderr, "\n"), "\n")+1:]
				if strings.ContainsAny(r.Stderr, "\x00\x1b") || !strings.Contains(last, tc.refused) {
					t.Errorf("the error carries the host's raw text: %q", r.Stderr)
				}
				for _, f := range files {
					// Show what the file would have done.
					c.impSh(bin, nil, "cd "+work+" && "+filepath.Join(bin, f.Name()))
					_, err := os.Stat(marker)
					t.Fatalf("a refused import wrote %s (running it made the marker: %v)", f.Name(), err == nil)
				}
				return
			}
			if r.Code != 0 || !strings.Contains(r.Stdout, "imported 1 command of module") {
				t.Fatalf("import: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
			}
			proxy := filepath.Join(bin, "get-route")
			body, err := os.ReadFile(proxy)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), tc.mod.Version) || strings.Contains(string(body), "touch") {
				t.Fatalf("the proxy holds the host's text:\n%s", body)
			}
			// Run it every way: the host refuses the run, but nothing of
			// the version may be executed on the way.
			c.impSh(bin, nil, "cd "+work+" && get-route arg; get-route --tether-help; "+proxy+"; $0 -c get-route")
			c.Run("help", "get-route")
			c.Run("import", "--list")
			if _, err := os.Stat("PWNED"); err == nil {
				t.Fatal("a host's text was run as shell code (PWNED in the test's directory)")
			}
		})
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("a host's text was run as shell code (marker %s: %v)", marker, err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Fatalf("files made in the working directory: %v", left)
	}
	// A module name is checked before anything is asked.
	r := c.Run("import", "--dir", filepath.Join(work, "bin"), "127.0.0.1:1", "net\n"+inj)
	if r.Code != 255 || !strings.Contains(r.Stderr, "bad module name") {
		t.Fatalf("bad module name: exit %d %q", r.Code, r.Stderr)
	}
}

// TestImportRemoveClosesImplicit: removing the last proxy of a host closes
// the implicit session its proxies ran in (no session host left running);
// while a proxy of the host is left, the session stays.
func TestImportRemoveClosesImplicit(t *testing.T) {
	s := setupImplicit(t)
	c, bin := s.c, s.bin
	c.MustRun("import", "--dir", bin, s.a.Host(), "netadmin")
	if r := c.impSh(bin, nil, "get-version"); r.Stdout != "netadmin 1.0\n" {
		t.Fatalf("proxy: %q %s", r.Stdout, r.Stderr)
	}
	name := "implicit-" + c.impClientID()[:8]
	if out := c.MustRun("list", s.a.Host()); !strings.Contains(out, name) {
		t.Fatalf("no implicit session:\n%s", out)
	}
	out := c.MustRun("import", "--remove", "get-version")
	if strings.Contains(out, "closed the implicit") {
		t.Fatalf("closed the session while proxies of the host are left:\n%s", out)
	}
	if out := c.MustRun("list", s.a.Host()); !strings.Contains(out, name) {
		t.Fatalf("implicit session gone with proxies left:\n%s", out)
	}
	out = c.MustRun("import", "--remove", s.a.Host(), "netadmin")
	if !strings.Contains(out, "closed the implicit remoting session "+s.a.Host()+"/"+name) {
		t.Fatalf("remove of the last proxies:\n%s", out)
	}
	if out := c.MustRun("list", s.a.Host()); strings.Contains(out, name) {
		t.Fatalf("implicit session still there after its last proxy was removed:\n%s", out)
	}
}

// TestImportOldProxies: a proxy written by the first format of tether import
// (host, module and command in the script) still runs, and import --list
// says to import it again.
func TestImportOldProxies(t *testing.T) {
	s := setupImplicit(t)
	c, bin := s.c, s.bin
	c.MustRun("import", "--dir", bin, s.a.Host(), "netadmin")
	// Rewrite one proxy as ba048d0's import wrote it.
	host := c.User + "@" + s.a.Host()
	old := fmt.Sprintf("#!/bin/sh\n# tether proxy: get-version of module netadmin 1.0 on %s\n# Made by tether import; help: get-version --tether-help; remove: tether import --remove get-version\n"+
		"exec '%s' -i '%s' proxy --host '%s' --module 'netadmin' --command 'get-version' -- \"$@\"\n", host, Binary(t), c.Key, host)
	if err := os.WriteFile(filepath.Join(bin, "get-version"), []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := c.impSh(bin, nil, "get-version"); r.Code != 0 || r.Stdout != "netadmin 1.0\n" {
		t.Fatalf("old proxy: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	r := c.Run("import", "--list")
	if r.Code != 0 || !strings.Contains(r.Stderr, "1 proxy was made by an older tether import (get-version); import again") {
		t.Fatalf("--list: exit %d %q", r.Code, r.Stderr)
	}
	c.MustRun("import", "--dir", bin, s.a.Host(), "netadmin")
	if r := c.Run("import", "--list"); strings.Contains(r.Stderr, "older") {
		t.Fatalf("still old after import: %q", r.Stderr)
	}
	body, _ := os.ReadFile(filepath.Join(bin, "get-version"))
	if strings.Contains(string(body), "--module") || !strings.Contains(string(body), "proxy --imports ") {
		t.Fatalf("new proxy:\n%s", body)
	}
}
