package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostOf finds the session host of session name (of the ssh world's user)
// by the files it holds open in its session directory.
func hostOf(t *testing.T, w *sshWorld, name string) int {
	t.Helper()
	for _, pid := range procsOf(w.user.UID, "session-host") {
		fds, _ := filepath.Glob(filepath.Join("/proc", itoa(pid), "fd", "*"))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.Contains(l, "/"+w.user.Name+"/"+name+"/") {
				return pid
			}
		}
	}
	t.Fatalf("no session host for %s", name)
	return 0
}

// sockets counts the unix sockets a process holds (a watching agent is one).
func sockets(pid int) int {
	n := 0
	fds, _ := filepath.Glob(filepath.Join("/proc", itoa(pid), "fd", "*"))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestSSHStdioAgentAttachesOnlyItsSession: a command to one session of an
// ssh:// host attaches that session's host only, not every session host of
// the user (each ssh connection's stdio agent did, which made a fan-out over
// many sessions of one host cost sessions × connections attaches).
func TestSSHStdioAgentAttachesOnlyItsSession(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	c.Env = append(c.Env, "TETHER_CONTROL_PERSIST=0") // a stdio agent per command, which ends with it
	c.MustRun("new", "--name", "a", "ssh://web1")
	c.MustRun("new", "--name", "b", "ssh://web1")
	hb := hostOf(t, w, "b")
	// The stdio agents of the news end with their ssh: then b's host
	// holds its listener and nothing of theirs.
	WaitFor(t, 20*time.Second, "the earlier stdio agents to end", func() bool {
		return len(procsOf(w.user.UID, "serve", "--stdio")) == 0
	})
	base := sockets(hb)
	dir := ShortTempDir(t)
	os.Chmod(dir, 0o777)
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "go")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", "ssh://web1/a", "touch "+started+"; while [ ! -e "+release+" ]; do sleep 0.05; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "the command in a", func() bool { _, err := os.Stat(started); return err == nil })
	if n := sockets(hb); n != base {
		t.Errorf("b's session host holds %d sockets while a command runs in a, %d before: the stdio agent attached b", n, base)
	}
	os.WriteFile(release, nil, 0o644)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// list still sees both.
	if out := c.MustRun("list", "ssh://web1"); !strings.Contains(out, "ssh://web1/a") || !strings.Contains(out, "ssh://web1/b") {
		t.Fatalf("list:\n%s", out)
	}
}

// TestSSHDefaultTetherMaster: without TETHER_CONTROL_PERSIST, the first
// command to an ssh:// host leaves a tether master, and the next command
// borrows a channel from it: no ssh process of its own, no new login.
// TETHER_CONTROL_PERSIST=0 starts none.
func TestSSHDefaultTetherMaster(t *testing.T) {
	w := newSSHWorld(t, "", "web1", "web2")
	c := w.client
	t.Cleanup(func() { c.Run("mux", "stop", "ssh://web1,ssh://web2") })
	c.MustRun("new", "--name", "s", "ssh://web1")
	WaitFor(t, 20*time.Second, "the tether master", func() bool {
		return strings.Contains(c.MustRun("mux", "status", "ssh://web1"), "tether master running")
	})
	dir := ShortTempDir(t)
	os.Chmod(dir, 0o777)
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "go")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", "ssh://web1/s", "touch "+started+"; while [ ! -e "+release+" ]; do sleep 0.05; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "the command", func() bool { _, err := os.Stat(started); return err == nil })
	if kids := childrenNamed(cmd.Process.Pid, "ssh"); len(kids) != 0 {
		t.Errorf("an invoke with the default tether master up runs ssh itself: %v", kids)
	}
	os.WriteFile(release, nil, 0o644)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := w.sshd.Logins(); n != 1 {
		t.Errorf("sshd logged %d logins, want 1 (ssh's master, which the tether master's ssh uses too)", n)
	}

	c.Env = append(c.Env, "TETHER_CONTROL_PERSIST=0")
	c.MustRun("invoke", "ssh://web2", "true")
	if out := c.MustRun("mux", "status", "ssh://web2"); strings.Contains(out, "tether master running") {
		t.Fatalf("TETHER_CONTROL_PERSIST=0 left a tether master: %q", out)
	}
}
