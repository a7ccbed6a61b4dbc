package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestConfigListSetAndRestart(t *testing.T) {
	a, c := setup(t)
	out := c.MustRun("config", "list", a.Host())
	for _, k := range []string{"AllowRemoteShellAccess", "IdleTimeout", "MaxIdleTimeout", "MaxShellRunTime", "MaxConcurrentUsers",
		"MaxShellsPerUser", "MaxConnections", "MaxProcessesPerShell", "MaxMemoryPerShellMB", "OutputBufferingMode", "MaxOutputBufferMB"} {
		if !strings.Contains(out, k) {
			t.Errorf("config list lacks %s", k)
		}
	}
	if !strings.Contains(out, "SOURCE") || !strings.Contains(out, "default") {
		t.Fatalf("config list:\n%s", out)
	}
	c.MustRun("config", "set", a.Host(), "IdleTimeout", "45m")
	if got := c.MustRun("config", "get", a.Host(), "IdleTimeout"); got != "45m\n" {
		t.Fatalf("get after set: %q", got)
	}
	r := c.Run("config", "set", a.Host(), "IdleTimeout", "2x")
	if r.Code != 255 || !strings.Contains(r.Stderr, "not a duration") {
		t.Fatalf("bad value: %d %q", r.Code, r.Stderr)
	}
	a.Term()
	a.Restart()
	if got := c.MustRun("config", "get", a.Host(), "IdleTimeout"); got != "45m\n" {
		t.Fatalf("after restart: %q", got)
	}
	if l := c.MustRun("config", "list", a.Host()); !strings.Contains(l, "local") {
		t.Fatalf("source not local:\n%s", l)
	}
	c.MustRun("config", "reset", a.Host(), "IdleTimeout")
	if got := c.MustRun("config", "get", a.Host(), "IdleTimeout"); got != "2h\n" {
		t.Fatalf("after reset: %q", got)
	}
}

func TestNonAdminCannotSet(t *testing.T) {
	a, alice, _, admin, _, _ := multiUser(t)
	r := alice.Run("config", "set", a.Host(), "MaxShellsPerUser", "100")
	if r.Code != 255 || !strings.Contains(r.Stderr, "admin") {
		t.Fatalf("non-admin set: %d %q", r.Code, r.Stderr)
	}
	if out := alice.MustRun("config", "get", a.Host(), "MaxShellsPerUser"); out != "30\n" {
		t.Fatalf("non-admin can read: %q", out)
	}
	admin.MustRun("config", "set", a.Host(), "MaxShellsPerUser", "100")
}

func TestSessionLimits(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxShellsPerUser", "2")
	c.MustRun("new", a.Host())
	c.MustRun("new", a.Host())
	r := c.Run("new", a.Host())
	want := "tether: " + a.Host() + ": cannot open session: MaxShellsPerUser (2) reached for " + c.User + "; remove a session (tether list " + a.Host() + ") or ask an admin to raise it"
	if r.Code != 255 || strings.TrimSpace(r.Stderr) != want {
		t.Fatalf("third session:\n got %q\nwant %q", r.Stderr, want)
	}
	// A temporary session counts too.
	if r := c.Run("invoke", a.Host(), "true"); r.Code != 255 || !strings.Contains(r.Stderr, "MaxShellsPerUser (2)") {
		t.Fatalf("temporary session over the limit: %d %q", r.Code, r.Stderr)
	}
	c.MustRun("config", "set", a.Host(), "MaxShellsPerUser", "30")

	c.MustRun("config", "set", a.Host(), "AllowRemoteShellAccess", "false")
	r = c.Run("new", a.Host())
	if r.Code != 255 || !strings.Contains(r.Stderr, "AllowRemoteShellAccess is false") {
		t.Fatalf("AllowRemoteShellAccess false: %d %q", r.Code, r.Stderr)
	}
	// Existing sessions keep running.
	if out := c.MustRun("list", a.Host()); strings.Count(out, "Opened") != 2 {
		t.Fatalf("existing sessions:\n%s", out)
	}
	c.MustRun("config", "set", a.Host(), "AllowRemoteShellAccess", "true")
}

func TestMaxConnections(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxConnections", "2")
	// Hold two authenticated connections open.
	key, _ := os.ReadFile(c.Key)
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{User: c.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	for i := 0; i < 2; i++ {
		cl, err := ssh.Dial("tcp", a.Addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
	}
	r := c.Run("invoke", a.Host(), "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "MaxConnections (2, ") || !strings.Contains(r.Stderr, "reached") {
		t.Fatalf("third connection: %d %q", r.Code, r.Stderr)
	}
}

func TestMaxConcurrentUsers(t *testing.T) {
	a, alice, bob, admin, _, _ := multiUser(t)
	admin.MustRun("config", "set", a.Host(), "MaxConcurrentUsers", "1")
	alice.MustRun("new", a.Host())
	r := bob.Run("new", a.Host())
	if r.Code != 255 || !strings.Contains(r.Stderr, "MaxConcurrentUsers (1) reached") {
		t.Fatalf("second user: %d %q", r.Code, r.Stderr)
	}
	alice.MustRun("new", a.Host()) // the same user may open more
}

func TestIdleTimeoutClosesDisconnected(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "IdleTimeout", "2s")
	idle := strings.TrimSpace(c.MustRun("new", "--name", "idle", a.Host()))
	busy := strings.TrimSpace(c.MustRun("new", "--name", "busy", a.Host()))
	c.MustRun("disconnect", idle)
	// list shows when idleness will close it.
	if l := c.MustRun("list", a.Host()); !strings.Contains(l, "closes in") {
		t.Fatalf("list does not say when idleness closes it:\n%s", l)
	}
	// An attached session running a long command is not closed.
	if out := c.MustRun("invoke", busy, "sleep 4; echo survived"); out != "survived\n" {
		t.Fatalf("busy session: %q", out)
	}
	WaitFor(t, 10*time.Second, "the idle session to close", func() bool {
		return !strings.Contains(c.MustRun("list", a.Host()), "idle")
	})
	r := c.Run("connect", idle)
	if r.Code != 255 || !strings.Contains(r.Stderr, "Closed: closed by IdleTimeout at") {
		t.Fatalf("connect to the timed-out session: %d %q", r.Code, r.Stderr)
	}
}

func TestMaxShellRunTime(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxShellRunTime", "3s")
	addr := strings.TrimSpace(c.MustRun("new", "--name", "runner", a.Host()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	cmd := c.Command(ctx, "invoke", addr, "sleep 60")
	out, _ := cmd.CombinedOutput()
	if time.Since(start) > 30*time.Second {
		t.Fatal("the session was not closed by MaxShellRunTime")
	}
	if !strings.Contains(string(out), "MaxShellRunTime") {
		t.Fatalf("the attached client was not told why: %q", out)
	}
	r := c.Run("invoke", addr, "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "closed by MaxShellRunTime") {
		t.Fatalf("after: %d %q", r.Code, r.Stderr)
	}
}

func TestPolicyLocksAndReloads(t *testing.T) {
	a, c := setup(t)
	policy := filepath.Join(a.State, "..", "policy.toml")
	if err := os.WriteFile(policy, []byte("IdleTimeout = \"30m\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the policy to apply", func() bool {
		return c.MustRun("config", "get", a.Host(), "IdleTimeout") == "30m\n"
	})
	r := c.Run("config", "set", a.Host(), "IdleTimeout", "5m")
	if r.Code != 255 || !strings.Contains(r.Stderr, "IdleTimeout is set by policy") || !strings.Contains(r.Stderr, "policy.toml") {
		t.Fatalf("set on a locked key: %d %q", r.Code, r.Stderr)
	}
	if l := c.MustRun("config", "list", a.Host()); !strings.Contains(l, "policy") || !strings.Contains(l, "yes") {
		t.Fatalf("list does not show the lock:\n%s", l)
	}
	// Editing the policy applies without a restart.
	os.WriteFile(policy, []byte("IdleTimeout = \"40m\"\n"), 0o644)
	WaitFor(t, 10*time.Second, "the edited policy", func() bool {
		return c.MustRun("config", "get", a.Host(), "IdleTimeout") == "40m\n"
	})
	// A broken policy keeps the last good one, and the log says why.
	os.WriteFile(policy, []byte("IdleTimeout = \"forever\"\n"), 0o644)
	WaitFor(t, 10*time.Second, "a log line about the broken policy", func() bool {
		return strings.Contains(a.Log(), "forever")
	})
	if got := c.MustRun("config", "get", a.Host(), "IdleTimeout"); got != "40m\n" {
		t.Fatalf("after a broken policy: %q", got)
	}
}

func TestProcessAndMemoryLimits(t *testing.T) {
	a, c := setup(t)
	if !strings.Contains(a.Log(), "session limits") {
		t.Fatalf("the agent does not log how limits are enforced:\n%s", a.Log())
	}
	c.MustRun("config", "set", a.Host(), "MaxProcessesPerShell", "5")
	c.MustRun("config", "set", a.Host(), "MaxMemoryPerShellMB", "64")
	addr := strings.TrimSpace(c.MustRun("new", "--name", "lim", a.Host()))
	other := strings.TrimSpace(c.MustRun("new", "--name", "other", a.Host()))
	c.MustRun("invoke", addr, "kept=yes")

	// A fork-bomb-ish loop is stopped; the session, the agent and other
	// sessions are fine. (Forks at once: TestAttackForkAtOnce.)
	r := c.Run("invoke", addr, `sh -c 'for i in $(seq 1 50); do sleep 1 & done; wait' ; echo loop-ended`)
	if !strings.Contains(r.Stderr, "MaxProcessesPerShell (5)") || !strings.Contains(r.Stdout, "loop-ended") {
		t.Fatalf("fork loop: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// The sleeps that did start count until they end (and the kernel
	// releases their pids a moment after that); then the session is free
	// again. Memory: a command allocating 200 MB is stopped with a clear
	// message.
	WaitFor(t, 15*time.Second, "the loop's processes to be gone", func() bool {
		r = c.Run("invoke", addr, "head -c 200m /dev/zero | tail")
		return !strings.Contains(r.Stderr, "MaxProcessesPerShell")
	})
	if r.Code == 0 || !strings.Contains(r.Stderr, "MaxMemoryPerShellMB (64)") {
		t.Fatalf("200 MB allocation: exit %d stderr %q", r.Code, r.Stderr)
	}
	if got := c.MustRun("invoke", addr, "echo $kept"); got != "yes\n" {
		t.Fatalf("session after the limits: %q", got)
	}
	if got := c.MustRun("invoke", other, "echo fine"); got != "fine\n" {
		t.Fatalf("other session: %q", got)
	}
	// Raising the limit applies to the running session.
	c.MustRun("config", "set", a.Host(), "MaxMemoryPerShellMB", "512")
	if r := c.Run("invoke", addr, "head -c 200m /dev/zero | tail | wc -c"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "209715200" {
		t.Fatalf("after raising the limit: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}
