package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
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
