package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSSHHostPrune: `tether host prune ssh://web1` removes old
// VERSION-SHA directories from which nothing runs, keeps one a process
// (an old session host) still runs from, and keeps this client's own;
// once that process ends, the next prune removes it too.
func TestSSHHostPrune(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	c.MustRun("new", "--name", "s", "ssh://web1")
	bin := filepath.Join(w.user.Home, ".local", "share", "tether", "bin")
	mine, _ := filepath.Glob(filepath.Join(bin, "*", "tether"))
	if len(mine) != 1 {
		t.Fatalf("installed: %v", mine)
	}
	mk := func(id, from string) string {
		d := filepath.Join(bin, id)
		os.MkdirAll(d, 0o700)
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "tether")
		os.WriteFile(p, b, 0o700)
		os.Chown(d, w.user.UID, w.user.GID)
		os.Chown(p, w.user.UID, w.user.GID)
		return p
	}
	mk("0.0.1-aaaaaaaaaaaa", "/bin/true")
	old := mk("0.0.2-bbbbbbbbbbbb", "/bin/sleep")
	os.MkdirAll(filepath.Join(bin, "not-ours"), 0o700) // not a VERSION-SHA name: never touched
	sleeper := exec.Command(old, "300")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.user.UID), Gid: uint32(w.user.GID)}}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()

	out := c.MustRun("host", "prune", "ssh://web1")
	myID := filepath.Base(filepath.Dir(mine[0]))
	for _, want := range []string{"removed 0.0.1-aaaaaaaaaaaa", "kept (session hosts run it) 0.0.2-bbbbbbbbbbbb", "kept (this version) " + myID} {
		if !strings.Contains(out, want) {
			t.Fatalf("prune printed %q, missing %q", out, want)
		}
	}
	for id, want := range map[string]bool{"0.0.1-aaaaaaaaaaaa": false, "0.0.2-bbbbbbbbbbbb": true, myID: true, "not-ours": true} {
		if _, err := os.Stat(filepath.Join(bin, id)); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", id, err == nil, want)
		}
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	out = c.MustRun("host", "prune", "ssh://web1")
	if !strings.Contains(out, "removed 0.0.2-bbbbbbbbbbbb") {
		t.Fatalf("second prune: %q", out)
	}
	if got := c.MustRun("invoke", "ssh://web1/s", "echo still"); got != "still\n" {
		t.Fatalf("the session after prune: %q", got)
	}
	if r := c.Run("host", "prune", "127.0.0.1"); r.Code != 255 || !strings.Contains(r.Stderr, "not an ssh:// host") {
		t.Fatalf("prune of a direct host: exit %d %s", r.Code, r.Stderr)
	}
}
