package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bash sessions (issue #14) against real agents. Each test opens its
// sessions with --shell bash, so it runs in both passes of make test.

func needBash(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash on this machine")
	}
}

func bashSetup(t *testing.T) (*Agent, *Client, string) {
	t.Helper()
	needBash(t)
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--shell", "bash", "--no-profile", a.Host()))
	return a, c, addr
}

// interruptRun starts `tether invoke addr script`, waits for "started\n",
// sends the client SIGINT (Ctrl-C) and returns the exit status and stdout.
func interruptRun(t *testing.T, c *Client, addr, script string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", addr, script)
	var out bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(&out, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("started\n"))
	if _, err := io.ReadFull(pr, buf); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	took := time.Since(start)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), took
}

func TestBashExitEndsTheCommandNotTheSession(t *testing.T) {
	_, c, addr := bashSetup(t)
	c.MustRun("invoke", addr, "f() { echo fn; }; alias ll='echo alias'; cd /tmp; shopt -s extglob; set -o noclobber")
	r := c.Run("invoke", addr, "x=kept; exit 3")
	if r.Code != 3 {
		t.Fatalf("exit 3: exit %d, stderr %q", r.Code, r.Stderr)
	}
	got := c.MustRun("invoke", addr, "echo $x; f; ll; pwd; shopt -q extglob && echo extglob; [[ -o noclobber ]] && echo noclobber")
	if got != "kept\nfn\nalias\n/tmp\nextglob\nnoclobber\n" {
		t.Fatalf("state after exit: %q", got)
	}
	// set -e: the failing command ends the command with its status.
	r = c.Run("invoke", addr, "set -e; false; echo no")
	if r.Code != 1 || r.Stdout != "" {
		t.Fatalf("set -e; false; echo no: exit %d stdout %q", r.Code, r.Stdout)
	}
	if got := c.MustRun("invoke", addr, "echo next $x"); got != "next kept\n" {
		t.Fatalf("after set -e: %q", got)
	}
	// set -u on an unset variable.
	r = c.Run("invoke", addr, "set -u; y=1; echo $nope; echo no")
	if r.Code == 0 || strings.Contains(r.Stdout, "no") || !strings.Contains(r.Stderr, "nope") {
		t.Fatalf("set -u: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := c.MustRun("invoke", addr, "set +u; echo $y"); got != "1\n" {
		t.Fatalf("after set -u: %q", got)
	}
}

func TestBashInterrupt(t *testing.T) {
	_, c, addr := bashSetup(t)
	c.MustRun("invoke", addr, "v=kept")
	// A builtin loop: only bash itself can stop it.
	code, _, took := interruptRun(t, c, addr, "echo started; while :; do :; done")
	if code != 130 {
		t.Fatalf("Ctrl-C in a builtin loop: exit %d, want 130", code)
	}
	t.Logf("builtin loop interrupted in %s", took)
	// The rest of the line does not run.
	code, out, _ := interruptRun(t, c, addr, "echo started; sleep 100; echo after")
	if code != 130 || strings.Contains(out, "after") {
		t.Fatalf("sleep 100; echo after: exit %d stdout %q", code, out)
	}
	// A program that ignores SIGINT is killed after the grace period.
	code, out, _ = interruptRun(t, c, addr, "echo started; bash -c 'trap \"\" INT; sleep 100'; echo after")
	if code == 0 || strings.Contains(out, "after") {
		t.Fatalf("SIGINT ignored: exit %d stdout %q", code, out)
	}
	if got := c.MustRun("invoke", addr, "echo $v"); got != "kept\n" {
		t.Fatalf("after the interrupts: %q", got)
	}
}

func TestBashIsTheHostsBash(t *testing.T) {
	_, c, addr := bashSetup(t)
	want, err := exec.Command("bash", "-c", "echo $BASH_VERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.MustRun("invoke", addr, "echo $BASH_VERSION"); got != string(want) {
		t.Fatalf("BASH_VERSION %q, want %q", got, want)
	}
	// Idioms the builtin interpreter lacks, across commands.
	c.MustRun("invoke", addr, "declare -i n=6*7; declare -u up=shout; printf -v q %q 'a b'; exec 3>/dev/null")
	if got := c.MustRun("invoke", addr, `echo $n $up $q; echo to3 >&3 && echo fd3`); got != "42 SHOUT a\\ b\nfd3\n" {
		t.Fatalf("declare -i/-u, printf -v %%q, exec 3>: %q", got)
	}
	if got := c.MustRun("invoke", addr, `true | false | true; echo ${PIPESTATUS[@]}`); got != "0 1 0\n" {
		t.Fatalf("PIPESTATUS: %q", got)
	}
	// Background jobs: $! is a pid, jobs and kill %1 work in a later command.
	pid := strings.TrimSpace(c.MustRun("invoke", addr, "sleep 300 & echo $!"))
	if _, err := os.Stat("/proc/" + pid); err != nil {
		t.Fatalf("$! = %q is not a live pid: %v", pid, err)
	}
	if got := c.MustRun("invoke", addr, "jobs"); !strings.Contains(got, "sleep 300") {
		t.Fatalf("jobs: %q", got)
	}
	c.MustRun("invoke", addr, "kill %1; wait")
	WaitFor(t, 10*time.Second, "kill %1 to end the job", func() bool {
		_, err := os.Stat("/proc/" + pid)
		return err != nil
	})
	// kill $$ (a script's abort idiom) keeps the session.
	c.Run("invoke", addr, "kill $$")
	if got := c.MustRun("invoke", addr, "echo $n"); got != "42\n" {
		t.Fatalf("after kill $$: %q", got)
	}
}

func TestBashKilledIsRestartedWithItsState(t *testing.T) {
	_, c, addr := bashSetup(t)
	c.MustRun("invoke", addr, "z=survives; g() { echo g; }")
	r := c.Run("invoke", addr, "kill -9 $$")
	t.Logf("kill -9 $$: exit %d stderr %q", r.Code, r.Stderr)
	r2 := c.Run("invoke", addr, "echo $z; g")
	if r2.Code != 0 || r2.Stdout != "survives\ng\n" {
		t.Fatalf("after kill -9 $$: exit %d stdout %q stderr %q", r2.Code, r2.Stdout, r2.Stderr)
	}
	if !strings.Contains(r.Stderr+r2.Stderr, "restart") {
		t.Fatalf("the session did not say bash was restarted: %q / %q", r.Stderr, r2.Stderr)
	}
	r3 := c.Run("invoke", addr, "true")
	if strings.Contains(r3.Stderr, "restart") {
		t.Fatalf("the restart was reported twice: %q", r3.Stderr)
	}
}

func TestShellChoice(t *testing.T) {
	needBash(t)
	a, c := setup(t)
	if l := c.MustRun("config", "list", a.Host()); !strings.Contains(l, "DefaultShell") {
		t.Fatalf("config list lacks DefaultShell:\n%s", l)
	}
	b := strings.TrimSpace(c.MustRun("new", "--name", "b", "--shell", "bash", a.Host()))
	g := strings.TrimSpace(c.MustRun("new", "--name", "g", "--shell", "builtin", a.Host()))
	if got := c.MustRun("invoke", b, "echo ${BASH_VERSION:+bash}"); got != "bash\n" {
		t.Fatalf("--shell bash: %q", got)
	}
	if got := c.MustRun("invoke", g, "echo ${BASH_VERSION:-builtin}"); got != "builtin\n" {
		t.Fatalf("--shell builtin: %q", got)
	}
	var rows []struct{ Address, Shell string }
	for _, line := range strings.Split(strings.TrimSpace(c.MustRun("list", "--json", a.Host())), "\n") {
		var r struct{ Address, Shell string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("list --json: %v: %q", err, line)
		}
		rows = append(rows, r)
	}
	shells := map[string]string{}
	for _, r := range rows {
		shells[r.Address] = r.Shell
	}
	if shells[b] != "bash" || shells[g] != "builtin" {
		t.Fatalf("list --json shells: %v", shells)
	}
	if l := c.MustRun("list", "-o", "wide", a.Host()); !strings.Contains(l, "SHELL") || !strings.Contains(l, "builtin") {
		t.Fatalf("list lacks the SHELL column:\n%s", l)
	}
	// A bad --shell is a usage error that names the choices.
	if r := c.Run("new", "--shell", "zsh", a.Host()); r.Code != 255 || !strings.Contains(r.Stderr, "bash or builtin") {
		t.Fatalf("--shell zsh: exit %d %q", r.Code, r.Stderr)
	}
	// DefaultShell decides without --shell; a policy lock holds for all.
	c.MustRun("config", "set", a.Host(), "DefaultShell", "builtin")
	d := strings.TrimSpace(c.MustRun("new", a.Host()))
	if got := c.MustRun("invoke", d, "echo ${BASH_VERSION:-builtin}"); got != "builtin\n" {
		t.Fatalf("DefaultShell builtin: %q", got)
	}
	c.MustRun("config", "reset", a.Host(), "DefaultShell")
	policy := filepath.Join(a.State, "..", "policy.toml")
	if err := os.WriteFile(policy, []byte("DefaultShell = \"builtin\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the policy to apply", func() bool {
		return c.MustRun("config", "get", a.Host(), "DefaultShell") == "builtin\n"
	})
	r := c.Run("new", "--shell", "bash", a.Host())
	if r.Code != 255 || !strings.Contains(r.Stderr, "policy") || !strings.Contains(r.Stderr, "DefaultShell") {
		t.Fatalf("--shell bash against a locked DefaultShell: exit %d %q", r.Code, r.Stderr)
	}
	if r := c.Run("new", "--shell", "builtin", a.Host()); r.Code != 0 {
		t.Fatalf("--shell builtin with the policy's value: exit %d %q", r.Code, r.Stderr)
	}
}

// TestBashLoginProfile: a bash session starts as `ssh host` would, with
// the user's login profile; its errors are said once; --no-profile skips
// it; a profile that hangs is cut off and the session still opens.
func TestBashLoginProfile(t *testing.T) {
	needBash(t)
	u := EnsureUser(t, "tt-prof")
	c := NewClient(t)
	c.User = u.Name
	u.Authorize(t, c.PubKey())
	a := StartAgent(t, AgentOptions{AuthorizedKeys: "%h/.ssh/authorized_keys"})
	profile := filepath.Join(u.Home, ".bash_profile")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(profile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(profile, u.UID, u.GID)
	}
	t.Cleanup(func() { os.Remove(profile) })
	write("export FROM_PROFILE=yes\nalias hi='echo hi from alias'\necho profile-warning >&2\n")

	addr := strings.TrimSpace(c.MustRun("new", "--shell", "bash", a.Host()))
	r := c.Run("invoke", addr, "echo $FROM_PROFILE; hi; echo $PATH")
	// PATH as a login bash of the user has it (/etc/profile sets it).
	login := exec.Command("bash", "-l", "-c", "echo $PATH")
	login.Dir = u.Home
	login.Env = []string{"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name, "PATH=/usr/bin:/bin"}
	login.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	wantPath, err := login.Output()
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 0 || r.Stdout != "yes\nhi from alias\n"+string(wantPath) {
		t.Fatalf("after the profile: exit %d stdout %q (want PATH %q) stderr %q", r.Code, r.Stdout, wantPath, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "profile-warning") {
		t.Fatalf("the profile's stderr was not reported: %q", r.Stderr)
	}
	if r := c.Run("invoke", addr, "true"); strings.Contains(r.Stderr, "profile-warning") {
		t.Fatalf("the profile's stderr was reported twice: %q", r.Stderr)
	}

	plain := strings.TrimSpace(c.MustRun("new", "--shell", "bash", "--no-profile", a.Host()))
	if got := c.MustRun("invoke", plain, "echo ${FROM_PROFILE:-none}"); got != "none\n" {
		t.Fatalf("--no-profile read the profile: %q", got)
	}

	// A hanging profile does not wedge the session.
	write("export BEFORE=1\nsleep 1000\nexport AFTER=1\n")
	hung := strings.TrimSpace(c.MustRun("new", "--shell", "bash", a.Host()))
	r = c.Run("invoke", hung, "echo ok ${AFTER:-cut}")
	if r.Code != 0 || r.Stdout != "ok cut\n" || !strings.Contains(r.Stderr, "profile") {
		t.Fatalf("hanging profile: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}
