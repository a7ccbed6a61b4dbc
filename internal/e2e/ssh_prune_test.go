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

// TestSSHReleaseForArch: a host whose uname -m says aarch64 gets the
// linux/arm64 build from TETHER_RELEASE_DIR (as `make release` names it),
// not the client's own binary, checked by SHA-256 on the host. The "arm64
// build" here is a script that runs the test's binary, so the session
// works on this amd64 machine too.
func TestSSHReleaseForArch(t *testing.T) {
	fake := ShortTempDir(t)
	os.WriteFile(filepath.Join(fake, "uname"), []byte("#!/bin/sh\ncase $1 in -m) echo aarch64;; *) echo Linux;; esac\n"), 0o755)
	rel := ShortTempDir(t)
	arm := filepath.Join(rel, "tether-linux-arm64")
	os.WriteFile(arm, []byte("#!/bin/sh\n# the arm64 build, for this test\nexec "+Binary(t)+" \"$@\"\n"), 0o755)
	w := newSSHWorld(t, "SetEnv PATH="+fake+":/usr/local/bin:/usr/bin:/bin")
	c := w.client
	c.Env = append(c.Env, "TETHER_RELEASE_DIR="+rel)
	if got := c.MustRun("new", "--name", "s", "ssh://web1"); got != "ssh://web1/s\n" {
		t.Fatalf("new: %q", got)
	}
	bins, _ := filepath.Glob(filepath.Join(w.user.Home, ".local", "share", "tether", "bin", "*", "tether"))
	if len(bins) != 1 {
		t.Fatalf("uploaded: %v", bins)
	}
	if got, want := fileSum(t, bins[0]), fileSum(t, arm); got != want {
		t.Fatalf("uploaded SHA-256 %s, want the arm64 build's %s (the client's own is %s)", got, want, fileSum(t, Binary(t)))
	}
	if id := filepath.Base(filepath.Dir(bins[0])); !strings.HasSuffix(id, fileSum(t, arm)[:12]) {
		t.Fatalf("directory %s is not named for the arm64 build's sum", id)
	}
	c.MustRun("invoke", "ssh://web1/s", "v=arm")
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $v"); got != "arm\n" {
		t.Fatalf("invoke: %q", got)
	}
	// Without the build, a clear line says where to put it.
	os.Remove(arm)
	wipeTether(t, w.user)
	c.MustRun("mux", "stop", "ssh://web1")
	oneLineError(t, c.Run("new", "ssh://web1"), "ssh://web1", "put the linux/arm64 build (make release) at "+arm)
}
