package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSSHMuxStatusStop: `tether mux status|stop ssh://web1` checks and
// stops Tether's ssh master for the host (ssh -O check|exit).
func TestSSHMuxStatusStop(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	if r := c.Run("mux", "status", "ssh://web1"); r.Code != 255 || !strings.Contains(r.Stdout, "ssh://web1: no master") {
		t.Fatalf("status before any command: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	c.MustRun("invoke", "ssh://web1", "true")
	if out := c.MustRun("mux", "status", "ssh://web1"); !strings.Contains(out, "ssh://web1: master running") {
		t.Fatalf("status: %q", out)
	}
	socks, _ := filepath.Glob(filepath.Join(c.Home, ".cache", "tether", "ssh", "*"))
	if len(socks) != 1 {
		t.Fatalf("master sockets %v", socks)
	}
	if out := c.MustRun("mux", "stop", "ssh://web1"); !strings.Contains(out, "ssh://web1: master stopped") {
		t.Fatalf("stop: %q", out)
	}
	WaitFor(t, 10*time.Second, "the master's socket to go", func() bool {
		_, err := os.Stat(socks[0])
		return os.IsNotExist(err)
	})
	if r := c.Run("mux", "status", "ssh://web1"); r.Code != 255 {
		t.Fatalf("status after stop: exit %d %q", r.Code, r.Stdout)
	}
	// Commands work again, through a new master.
	c.MustRun("invoke", "ssh://web1", "true")
}

// TestSSHUserControlMaster: when the user's ssh_config gives the host a
// ControlMaster and ControlPath, Tether does not override them: ssh makes
// and uses the user's master (Tether's directory stays empty), and mux
// status/stop reach it.
func TestSSHUserControlMaster(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	mine := ShortTempDir(t)
	cfg := w.sshd.SSHConfig(t, c.Home, c.Key, w.user.Name, "  ControlMaster auto\n  ControlPath "+mine+"/%C\n  ControlPersist 60", "web2")
	c.Env = append(c.Env, "TETHER_SSH_CONFIG="+cfg)
	t.Cleanup(func() { StopSSHMasters(mine) })
	c.MustRun("new", "--name", "s", "ssh://web2")
	c.MustRun("invoke", "ssh://web2/s", "v=1")
	if got := c.MustRun("invoke", "ssh://web2/s", "echo $v"); got != "1\n" {
		t.Fatalf("invoke: %q", got)
	}
	if socks, _ := filepath.Glob(filepath.Join(mine, "*")); len(socks) != 1 {
		t.Fatalf("the user's ControlPath dir holds %v, want one master socket", socks)
	}
	if socks, _ := filepath.Glob(filepath.Join(c.Home, ".cache", "tether", "ssh", "*")); len(socks) != 0 {
		t.Fatalf("Tether made masters of its own despite the user's ControlPath: %v", socks)
	}
	if n := w.sshd.Logins(); n != 1 {
		t.Errorf("sshd logged %d logins, want 1 (the user's master)", n)
	}
	if out := c.MustRun("mux", "status", "ssh://web2"); !strings.Contains(out, "master running") {
		t.Fatalf("status: %q", out)
	}
	c.MustRun("mux", "stop", "ssh://web2")
	WaitFor(t, 10*time.Second, "the user's master to stop", func() bool {
		socks, _ := filepath.Glob(filepath.Join(mine, "*"))
		return len(socks) == 0
	})
}

// TestSSHControlPersist: with TETHER_CONTROL_PERSIST, ssh:// hosts get a
// tether master too: it holds one stdio agent's connection, later
// commands borrow channels from it (no ssh process of their own, no
// login), and mux status/stop cover it.
func TestSSHControlPersist(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	c.Env = append(c.Env, "TETHER_CONTROL_PERSIST=1m")
	t.Cleanup(func() { c.Run("mux", "stop", "ssh://web1") })
	c.MustRun("new", "--name", "s", "ssh://web1")
	WaitFor(t, 20*time.Second, "the tether master", func() bool {
		return strings.Contains(c.MustRun("mux", "status", "ssh://web1"), "tether master running")
	})
	c.MustRun("invoke", "ssh://web1/s", "v=held")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", "ssh://web1/s", "echo $v; sleep 2")
	var out SyncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 20*time.Second, "output", func() bool { return out.String() == "held\n" })
	if kids := childrenNamed(cmd.Process.Pid, "ssh"); len(kids) != 0 {
		t.Errorf("an invoke through the tether master runs ssh itself: %v", kids)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := w.sshd.Logins(); n != 1 {
		t.Errorf("sshd logged %d logins, want 1", n)
	}
	out2 := c.MustRun("mux", "stop", "ssh://web1")
	if !strings.Contains(out2, "tether master stopped") {
		t.Fatalf("stop: %q", out2)
	}
}
