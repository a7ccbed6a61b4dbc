package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemoteErrorsDoNotLookLocal (issue 12, item 8): the remote shell's
// messages read as bash's, not as the tether client's own errors; Tether's
// flags after the targets are refused instead of run as the command.
func TestRemoteErrorsDoNotLookLocal(t *testing.T) {
	a, c := setup(t)
	sess := strings.TrimSpace(c.MustRun("new", a.Host()))
	r := c.Run("invoke", sess, "nosuchcmd")
	want := "bash: nosuchcmd: command not found\n" // the host's bash, as in a terminal
	if BuiltinShell() {
		want = "bash: line 1: nosuchcmd: command not found\n" // worded as bash -c
	}
	if r.Code != 127 || r.Stderr != want {
		t.Fatalf("nosuchcmd: exit %d %q", r.Code, r.Stderr)
	}
	for _, flag := range []string{"--json", "--throttle=3", "-n", "--connect-timeout", "-i"} {
		r = c.Run("invoke", sess, flag, "touch ran")
		if r.Code != 255 || !strings.Contains(r.Stderr, "options go before the targets") || !strings.Contains(r.Stderr, flag) {
			t.Fatalf("invoke S %s: exit %d %q %q", flag, r.Code, r.Stdout, r.Stderr)
		}
	}
	if out := c.MustRun("invoke", sess, "ls ran 2>/dev/null || echo none"); out != "none\n" {
		t.Fatalf("a refused flag ran something: %q", out)
	}
	// The remote command's own options are the command's.
	if out := c.MustRun("invoke", sess, "echo", "-n", "x", "--json"); out != "x --json" {
		t.Fatalf("echo -n x --json: %q", out)
	}
	if out := c.MustRun("invoke", sess, "ls", "-la", "/"); !strings.Contains(out, "total") {
		t.Fatalf("ls -la: %q", out)
	}
	// -- lets a command start with what looks like an option.
	if r := c.Run("invoke", sess, "--", "--json"); r.Code != 127 || !strings.Contains(r.Stderr, "--json: command not found") {
		t.Fatalf("invoke S -- --json: exit %d %q", r.Code, r.Stderr)
	}
}

// TestServeStop (issue 12, item 11): tether serve --stop ends the agent of
// a state directory and waits for it; with none running it says so.
func TestServeStop(t *testing.T) {
	a, c := setup(t)
	sess := strings.TrimSpace(c.MustRun("new", a.Host()))
	c.MustRun("invoke", sess, "x=kept")
	r := c.Run("serve", "--stop", "--state", a.State)
	if r.Code != 0 || !strings.Contains(r.Stdout, "stopped tether serve (pid ") {
		t.Fatalf("serve --stop: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// It returned once the agent's process had ended; this test reaps it
	// a moment later.
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("serve --stop returned while the agent still runs")
	}
	r = c.Run("serve", "--stop", "--state", a.State)
	if r.Code == 0 || !strings.Contains(r.Stderr, "no tether serve runs with the state directory "+a.State) {
		t.Fatalf("second serve --stop: exit %d %q", r.Code, r.Stderr)
	}
	// The session outlived its agent.
	a.Restart()
	if out := c.MustRun("invoke", sess, "echo $x"); out != "kept\n" {
		t.Fatalf("session after serve --stop: %q", out)
	}
	// A second agent on the same state is refused, naming the first.
	r = c.Run("serve", "--listen", "127.0.0.1:0", "--state", a.State, "--policy", filepath.Join(a.State, "..", "policy.toml"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "another tether serve (pid ") || !strings.Contains(r.Stderr, "serve --stop") {
		t.Fatalf("second agent: exit %d %q", r.Code, r.Stderr)
	}
}

// TestFirstDayPaperCuts (issue 12, item 12): the small things a newcomer
// tripped over.
func TestFirstDayPaperCuts(t *testing.T) {
	a, c := setup(t)
	t.Run("help nosuch", func(t *testing.T) {
		r := c.Run("help", "nosuch")
		if r.Code == 0 || !strings.Contains(r.Stderr, `no help topic "nosuch"`) {
			t.Fatalf("exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		if out := c.MustRun("help"); !strings.Contains(out, "Available Commands") {
			t.Fatalf("help: %q", out)
		}
	})
	t.Run("serve --help", func(t *testing.T) {
		out := c.MustRun("serve", "--help")
		if !strings.Contains(out, "--listen") || strings.Contains(out, "--identity") || strings.Contains(out, "--known-hosts") || strings.Contains(out, "Global Flags") {
			t.Fatalf("serve --help:\n%s", out)
		}
	})
	t.Run("-i help", func(t *testing.T) {
		if out := c.MustRun("invoke", "--help"); !strings.Contains(out, "~/.config/tether/id_ed25519") {
			t.Fatalf("invoke --help:\n%s", out)
		}
	})
	t.Run("space-separated hosts", func(t *testing.T) {
		r := c.Run("invoke", a.Host()+" "+a.Host(), "true")
		if r.Code != 255 || strings.Contains(r.Stderr, "IPv6") || !strings.Contains(r.Stderr, "separate addresses with commas, not spaces") {
			t.Fatalf("exit %d %q", r.Code, r.Stderr)
		}
	})
	t.Run("connect-timeout in seconds", func(t *testing.T) {
		if r := c.Run("--connect-timeout", "1", "invoke", a.Host(), "true"); r.Code != 0 {
			t.Fatalf("--connect-timeout 1: exit %d %q", r.Code, r.Stderr)
		}
		if r := c.Run("--connect-timeout", "soon", "invoke", a.Host(), "true"); r.Code != 255 || !strings.Contains(r.Stderr, "use seconds") {
			t.Fatalf("--connect-timeout soon: exit %d %q", r.Code, r.Stderr)
		}
	})
}

// TestImportPaperCuts: "imported 1 command", and a clash of many names is
// one line per name instead of one line of hundreds of characters.
func TestImportPaperCuts(t *testing.T) {
	s := setupImplicit(t)
	c, bin := s.c, s.bin
	one := ShortTempDir(t)
	os.MkdirAll(filepath.Join(one, "solo", "bin"), 0o755)
	os.WriteFile(filepath.Join(one, "solo", "module.toml"), []byte("name = \"solo\"\nversion = \"1\"\n"), 0o644)
	os.WriteFile(filepath.Join(one, "solo", "bin", "only"), []byte("#!/bin/sh\necho only\n"), 0o755)
	solo := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}, Args: []string{"--modules", one}})
	if out := c.MustRun("import", "--dir", bin, solo.Host(), "solo"); !strings.Contains(out, "imported 1 command of module solo 1 ") {
		t.Fatalf("import of one command:\n%s", out)
	}
	c.MustRun("import", "--dir", bin, s.a.Host(), "netadmin")
	r := c.Run("import", "--dir", bin, s.b.Host(), "netadmin")
	if r.Code != 255 || !strings.Contains(r.Stderr, "6 names are taken:\n") {
		t.Fatalf("clash: exit %d %q", r.Code, r.Stderr)
	}
	for _, line := range strings.Split(r.Stderr, "\n") {
		// The first-contact line holds the known_hosts path, as long as
		// the test's HOME is (a normal user's is longer than root's).
		if strings.HasPrefix(line, "tether: permanently added") {
			continue
		}
		if len(line) > 200 {
			t.Fatalf("a line of %d characters:\n%s", len(line), r.Stderr)
		}
	}
}

// TestMakeRunSaysHowToStop: make run prints a stop command, and that
// command stops the agent it started.
func TestMakeRunSaysHowToStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary with make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	home := ShortTempDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gocache, _ := exec.Command("go", "env", "GOCACHE").Output()
	gomod, _ := exec.Command("go", "env", "GOMODCACHE").Output()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "USER=" + os.Getenv("USER"),
		"GOCACHE=" + strings.TrimSpace(string(gocache)), "GOMODCACHE=" + strings.TrimSpace(string(gomod)),
		"GOFLAGS=-buildvcs=false", "TETHER_RUN_ADDR=" + addr, "SSH_AUTH_SOCK="}
	state := filepath.Join(home, ".local", "state", "tether-dev")
	t.Cleanup(func() {
		stop := exec.Command("../../bin/tether", "serve", "--stop", "--state", state)
		stop.Env = env
		stop.Run()
		KillSessionHosts(state)
	})
	cmd := exec.Command("make", "run")
	cmd.Dir = "../.."
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make run: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "pkill") {
		t.Fatalf("make run still says pkill:\n%s", out)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, "Stop the agent with: "); ok {
			line = s
		}
	}
	if line != "bin/tether serve --stop --state "+state {
		t.Fatalf("stop line %q in:\n%s", line, out)
	}
	stop := exec.Command("sh", "-c", line)
	stop.Dir, stop.Env = "../..", env
	if b, err := stop.CombinedOutput(); err != nil || !strings.Contains(string(b), "stopped tether serve") {
		t.Fatalf("%s: %v %s", line, err, b)
	}
	probe := exec.Command("../../bin/tether", "serve", "--stop", "--state", state)
	probe.Env = env
	if b, err := probe.CombinedOutput(); err == nil || !strings.Contains(string(b), "no tether serve runs") {
		t.Fatalf("the agent still runs after the stop line: %v %s", err, b)
	}
}

// TestBinaryRemovedAtExit: a test process removes the binary it built
// (make test left a 12 MB /tmp/tether-bin-* per package behind).
func TestBinaryRemovedAtExit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test")
	}
	if os.Getenv("TETHER_BIN") != "" {
		t.Skip("TETHER_BIN: nothing is built")
	}
	tmp := ShortTempDir(t)
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestFirstDayPaperCuts$", ".")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "tether-bin-*")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestBusyHintNamesTheCommand (issue 12, item 9): the hint of a Busy
// refusal names the command the user ran, with its own --force where it
// has one. (invoke's hint, for a session held without a running command,
// is in cli's TestBusyHint.)
func TestBusyHintNamesTheCommand(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hold := c.Command(ctx, "invoke", addr, "sleep 60")
	hold.Start()
	defer func() { cancel(); hold.Wait() }()
	b := c.WithKey()
	WaitFor(t, 10*time.Second, "the command running", func() bool { return strings.Contains(b.Run("list", a.Host()).Stdout, "sleep 60") })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"receive", addr}, "use tether receive --force " + addr + " to take it over"},
		{[]string{"connect", addr}, "use tether connect --force " + addr + " to take it over"},
	} {
		r := b.Run(tc.args...)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Busy") || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s: exit %d %q\nwant %q", tc.args[0], r.Code, r.Stderr, tc.want)
		}
	}
}

// TestKnownHostsRemove (issue 12, item 14): after a host is reinstalled
// (a new host key), known-hosts remove forgets the old key like
// ssh-keygen -R, and the next connection trusts the new one.
func TestKnownHostsRemove(t *testing.T) {
	a, c := setup(t)
	c.MustRun("invoke", a.Host(), "true")
	kh := filepath.Join(c.Home, ".config", "tether", "known_hosts")
	b, _ := os.ReadFile(kh)
	os.WriteFile(kh, append([]byte("# kept comment\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), b...), 0o600)
	// Reinstalled: a new state directory is a new host key, same address.
	a.Stop()
	os.RemoveAll(a.State)
	a.Restart()
	if r := c.Run("invoke", a.Host(), "true"); r.Code != 255 || !strings.Contains(r.Stderr, "changed") {
		t.Fatalf("new key: exit %d %q", r.Code, r.Stderr)
	}
	r := c.Run("known-hosts", "remove", a.Host())
	if r.Code != 0 || !strings.Contains(r.Stdout, "removed 1 key of "+a.Host()+" from "+kh+" (line 3)") {
		t.Fatalf("known-hosts remove: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if got, _ := os.ReadFile(kh); !strings.HasPrefix(string(got), "# kept comment\nother.example ") || strings.Count(string(got), "\n") != 2 {
		t.Fatalf("left:\n%s", got)
	}
	if r := c.Run("invoke", a.Host(), "echo back"); r.Code != 0 || r.Stdout != "back\n" || !strings.Contains(r.Stderr, "permanently added") {
		t.Fatalf("after remove: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Run("known-hosts", "remove", "nowhere.example"); r.Code == 0 || !strings.Contains(r.Stderr, "no key of nowhere.example in "+kh) {
		t.Fatalf("unknown host: exit %d %q", r.Code, r.Stderr)
	}
}

// TestCompletion (issue 12, item 13): shell completion offers the session
// addresses of the registry and the setting names, through cobra's hidden
// __complete command that the shell scripts call.
func TestCompletion(t *testing.T) {
	a, c := setup(t)
	s1 := strings.TrimSpace(c.MustRun("new", "--name", "alpha", a.Host()))
	s2 := strings.TrimSpace(c.MustRun("new", "--name", "beta", a.Host()))
	complete := func(args ...string) []string {
		t.Helper()
		out := c.MustRun(append([]string{"__complete"}, args...)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") { // the last line is the directive
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	eq := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: got %q, want %q", what, got, want)
		}
	}
	eq("connect", complete("connect", ""), s1, s2)
	eq("connect prefix", complete("connect", s1[:len(s1)-2]), s1)
	eq("invoke", complete("invoke", ""), s1, a.Host(), s2)
	eq("invoke list", complete("invoke", s1+","), s1+","+s1, s1+","+a.Host(), s1+","+s2)
	eq("invoke command", complete("invoke", s1, ""))
	eq("list", complete("list", ""), a.Host())
	eq("config get", complete("config", "get", a.Host(), "idle"), "IdleTimeout")
	eq("config set", complete("config", "set", a.Host(), "MaxShellsP"), "MaxShellsPerUser")
	eq("config reset", complete("--connect-timeout", "5", "config", "reset", a.Host(), "OutputBuffering"), "OutputBufferingMode")
}

// TestListFitsTheTerminal (issue 12, item 12): list's rows fit the
// terminal's width; -o wide shows every column in full.
func TestListFitsTheTerminal(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "a-rather-long-session-name", a.Host()))
	long := "sleep 60; echo " + strings.Repeat("z", 80)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := c.Command(ctx, "invoke", addr, long)
	run.Start()
	defer func() { cancel(); run.Wait() }()
	WaitFor(t, 10*time.Second, "the command running", func() bool { return strings.Contains(c.Run("list").Stdout, "sleep 60") })
	c.Env = []string{"COLUMNS=80"}
	out := c.MustRun("list")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if n := len([]rune(l)); n > 80 {
			t.Fatalf("a row of %d columns in an 80-column terminal:\n%s", n, out)
		}
	}
	if !strings.Contains(out, addr) || !strings.Contains(out, "sleep 60") || !strings.Contains(out, "…") {
		t.Fatalf("list at 80 columns:\n%s", out)
	}
	wide := c.MustRun("list", "-o", "wide")
	for _, want := range []string{long, "CREATED", "IDLE", addr} {
		if !strings.Contains(wide, want) {
			t.Fatalf("list -o wide lacks %q:\n%s", want, wide)
		}
	}
	if r := c.Run("list", "-o", "yaml"); r.Code != 255 || !strings.Contains(r.Stderr, "only output format is wide") {
		t.Fatalf("-o yaml: exit %d %q", r.Code, r.Stderr)
	}
}

// TestEnterShellSeesTERM (issue 12, item 12): inside enter the shell's own
// $TERM is the terminal's, as env shows it to programs, and setting it
// keeps $?.
func TestEnterShellSeesTERM(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	tt := enterInTmux(t, c, 120, 30, addr)
	tt.waitPrompt()
	tt.typeCommand(`echo "shell=[$TERM]"; env | grep '^TERM='`)
	var env string
	for _, l := range tt.lines() {
		if v, ok := strings.CutPrefix(l, "TERM="); ok {
			env = v
		}
	}
	if env == "" || !tt.hasLine("shell=["+env+"]") {
		t.Fatalf("$TERM in the shell is not the terminal's (env: %q):\n%s", env, tt.screen())
	}
	tt.typeCommand("(exit 7)")
	tt.typeCommand(`echo "status=$?"`)
	if !tt.hasLine("status=7") {
		t.Fatalf("$? was not kept:\n%s", tt.screen())
	}
}
