package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sshWorld is a private sshd logging in a test user that has no tether,
// and a client whose ssh config reaches it as web1.
type sshWorld struct {
	t      *testing.T
	user   OSUser
	sshd   *SSHD
	client *Client
	config string
}

// newSSHWorld makes the world; extra goes into sshd_config.
func newSSHWorld(t *testing.T, sshdExtra string, aliases ...string) *sshWorld {
	t.Helper()
	u := EnsureUser(t, "tt-ssh")
	wipeTether(t, u)
	c := NewClient(t)
	s := StartSSHD(t, SSHDOptions{Users: []OSUser{u}, Keys: []string{c.PubKey()}, Extra: sshdExtra})
	if len(aliases) == 0 {
		aliases = []string{"web1"}
	}
	cfg := s.SSHConfig(t, c.Home, c.Key, u.Name, "", aliases...)
	c.Env = append(c.Env, "TETHER_SSH_CONFIG="+cfg)
	t.Cleanup(func() { StopSSHMasters(filepath.Join(c.Home, ".cache", "tether", "ssh")) })
	return &sshWorld{t: t, user: u, sshd: s, client: c, config: cfg}
}

// wipeTether removes what a bootstrap leaves in the user's home, and kills
// the session hosts it started, before and after the test.
func wipeTether(t *testing.T, u OSUser) {
	wipe := func() {
		state := filepath.Join(u.Home, ".local", "state", "tether")
		KillSessionHosts(state)
		os.RemoveAll(state)
		os.RemoveAll(filepath.Join(u.Home, ".local", "share", "tether"))
	}
	wipe()
	t.Cleanup(wipe)
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// TestSSHFirstContact: a host with only sshd and a user with no tether:
// `new ssh://web1` uploads the client's binary (checksum equal), starts a
// session and prints its address as written; state persists across
// invokes; later commands reuse Tether's ssh master (one login in sshd's
// log for all of them); list and remove work on ssh:// addresses.
func TestSSHFirstContact(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	if got := c.MustRun("new", "--name", "s", "ssh://web1"); got != "ssh://web1/s\n" {
		t.Fatalf("new printed %q, want ssh://web1/s", got)
	}
	bins, _ := filepath.Glob(filepath.Join(w.user.Home, ".local", "share", "tether", "bin", "*", "tether"))
	if len(bins) != 1 {
		t.Fatalf("uploaded binaries: %v, want one", bins)
	}
	if got, want := fileSum(t, bins[0]), fileSum(t, Binary(t)); got != want {
		t.Fatalf("uploaded binary's SHA-256 %s, the client's %s", got, want)
	}
	fi, err := os.Stat(bins[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("uploaded binary's mode %v, want 0700", fi.Mode().Perm())
	}
	if id := filepath.Base(filepath.Dir(bins[0])); !strings.HasPrefix(id, "0.") || !strings.HasSuffix(fileSum(t, bins[0])[:12], id[len(id)-12:]) {
		t.Errorf("binary's directory %s is not VERSION-SHA", id)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(bins[0]), ".tether-*")); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
	c.MustRun("invoke", "ssh://web1/s", "x=42; cd /tmp")
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $x $PWD; id -un"); got != "42 /tmp\ntt-ssh\n" {
		t.Fatalf("state did not persist: %q", got)
	}
	socks, _ := filepath.Glob(filepath.Join(c.Home, ".cache", "tether", "ssh", "*"))
	if len(socks) != 1 {
		t.Fatalf("master sockets %v, want one", socks)
	}
	if fi, err := os.Stat(socks[0]); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("master socket %s: %v %v", socks[0], fi, err)
	}
	if fi, _ := os.Stat(filepath.Dir(socks[0])); fi.Mode().Perm() != 0o700 {
		t.Errorf("masters' dir mode %v, want 0700", fi.Mode().Perm())
	}
	if n := w.sshd.Logins(); n != 1 {
		t.Errorf("sshd logged %d logins for new + 2 invokes, want 1 (the master's)", n)
	}
	out := c.MustRun("list", "ssh://web1")
	if !strings.Contains(out, "s") || !strings.Contains(out, "ssh://web1") {
		t.Fatalf("list ssh://web1:\n%s", out)
	}
	c.MustRun("remove", "ssh://web1/s")
	if r := c.Run("invoke", "ssh://web1/s", "true"); r.Code == 0 {
		t.Fatalf("invoke after remove worked: %+v", r)
	}
	// A bare ssh:// host runs a temporary session.
	if got := c.MustRun("invoke", "ssh://web1", "echo hi"); got != "hi\n" {
		t.Fatalf("temporary session: %q", got)
	}
}

func readLog(p string) string { b, _ := os.ReadFile(p); return string(b) }

// TestSSHFanoutBastion: three ssh:// targets reached only through a
// bastion (a second private sshd, ProxyJump) and one direct agent, in one
// fan-out with --throttle 2: every line tagged with its target as written,
// the exit status the largest. First contact on the three runs at once.
func TestSSHFanoutBastion(t *testing.T) {
	var users []OSUser
	for _, n := range []string{"tt-ssh", "tt-ssh2", "tt-ssh3"} {
		u := EnsureUser(t, n)
		wipeTether(t, u)
		users = append(users, u)
	}
	c := NewClient(t)
	web := StartSSHD(t, SSHDOptions{Users: users, Keys: []string{c.PubKey()}})
	bastion := StartSSHD(t, SSHDOptions{Users: users[:1], Keys: []string{c.PubKey()}})
	bastion.SSHConfig(t, c.Home, c.Key, users[0].Name, "", "bastion")
	var cfg string
	for i, u := range users {
		cfg = web.SSHConfig(t, c.Home, c.Key, u.Name, "  ProxyJump bastion", "web"+string(rune('1'+i)))
	}
	c.Env = append(c.Env, "TETHER_SSH_CONFIG="+cfg)
	t.Cleanup(func() { StopSSHMasters(filepath.Join(c.Home, ".cache", "tether", "ssh")) })
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})

	targets := "ssh://web1,ssh://web2,ssh://web3," + a.Host()
	out := c.MustRun("new", "--throttle", "2", "--name", "f", targets)
	for _, want := range []string{"ssh://web1/f", "ssh://web2/f", "ssh://web3/f", a.Host() + "/f"} {
		if !strings.Contains(out, want+"\n") {
			t.Fatalf("new printed %q, missing %s", out, want)
		}
	}
	if n := bastion.Logins(); n < 3 {
		t.Errorf("bastion logged %d logins, want one per web alias (ProxyJump)", n)
	}
	sessions := "ssh://web1/f,ssh://web2/f,ssh://web3/f," + a.Host() + "/f"
	c.MustRun("invoke", "--throttle", "2", sessions, `n=$(id -un)`)
	r := c.Run("invoke", "--throttle", "2", sessions, `echo "me $n"; case $n in tt-ssh2) exit 3;; tt-ssh3) exit 1;; esac`)
	if r.Code != 3 {
		t.Fatalf("exit %d, want 3 (the largest)\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for i, u := range users {
		if want := "ssh://web" + string(rune('1'+i)) + "/f: me " + u.Name + "\n"; !strings.Contains(r.Stdout, want) {
			t.Errorf("missing %q in\n%s", want, r.Stdout)
		}
	}
	if want := a.Host() + "/f: me " + c.User + "\n"; !strings.Contains(r.Stdout, want) {
		t.Errorf("missing %q in\n%s", want, r.Stdout)
	}
}

// TestSSHAnotherClient: from another client HOME with the same ssh config
// and key, list ssh://web1 shows the session; connect and receive deliver
// what it printed while away, exactly once.
func TestSSHAnotherClient(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	c.MustRun("new", "--name", "job", "ssh://web1")
	if out := c.MustRun("invoke", "--disconnected", "ssh://web1/job", `for i in $(seq 1 30); do echo $i; sleep 0.02; done`); out != "ssh://web1/job\n" {
		t.Fatalf("--disconnected printed %q", out)
	}
	b := c.WithKey()
	b.Env = c.Env
	t.Cleanup(func() { StopSSHMasters(filepath.Join(b.Home, ".cache", "tether", "ssh")) })
	list := b.MustRun("list", "ssh://web1")
	if !strings.Contains(list, "ssh://web1/job") || !strings.Contains(list, "Disconnected") {
		t.Fatalf("list from another client:\n%s", list)
	}
	b.MustRun("connect", "ssh://web1/job")
	if r := b.Run("receive", "ssh://web1/job"); r.Code != 0 || r.Stdout != seq(30) {
		t.Fatalf("receive: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := b.Run("receive", "ssh://web1/job"); r.Code != 0 || r.Stdout != "" {
		t.Fatalf("second receive delivered again: %q %s", r.Stdout, r.Stderr)
	}
	if !strings.Contains(b.MustRun("list"), "ssh://web1/job") {
		t.Fatal("connect did not add ssh://web1/job to the registry as written")
	}
}

// childrenNamed are the pids of pid's children whose command is name.
func childrenNamed(pid int, name string) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if s[i+1:j] != name || len(f) < 2 {
			continue
		}
		var p, pp int
		fmt.Sscan(f[1], &pp)
		fmt.Sscan(strings.TrimSpace(s[:i]), &p)
		if pp == pid {
			out = append(out, p)
		}
	}
	return out
}

func appendFile(t *testing.T, p, text string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// oneLineError checks a command failed before running anything: exit 255
// and one line on stderr, naming the target, containing want.
func oneLineError(t *testing.T, r Result, target, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	if r.Code != 255 || len(lines) != 1 || !strings.Contains(lines[0], target) || !strings.Contains(lines[0], want) {
		t.Fatalf("want exit 255 and one line naming %s with %q; got exit %d, stderr:\n%s", target, want, r.Code, r.Stderr)
	}
}

// TestSSHBadInput: what goes wrong on the way to a host is one clear line
// naming the target, exit 255, never a hang (BatchMode: no terminal here).
func TestSSHBadInput(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	other := filepath.Join(c.Home, "other_key")
	Keygen(t, other)
	otherHost := filepath.Join(c.Home, "other_host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherHost).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	hostPub, _ := os.ReadFile(otherHost + ".pub")
	changedKH := filepath.Join(c.Home, "changed_known_hosts")
	appendFile(t, changedKH, fmt.Sprintf("[127.0.0.1]:%d %s", w.sshd.Port, hostPub))
	emptyKH := filepath.Join(c.Home, "empty_known_hosts")
	appendFile(t, emptyKH, "")
	closed := freePort(t)
	appendFile(t, w.config, fmt.Sprintf(`Host down
  HostName 127.0.0.1
  Port %d
  LogLevel ERROR
Host badkey
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  LogLevel ERROR
Host changed
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  LogLevel ERROR
Host unknownkey
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  LogLevel ERROR
`, closed, w.sshd.Port, w.user.Name, other, filepath.Join(c.Home, "known_hosts"),
		w.sshd.Port, w.user.Name, c.Key, changedKH,
		w.sshd.Port, w.user.Name, c.Key, emptyKH))
	t.Run("unreachable", func(t *testing.T) {
		oneLineError(t, c.Run("invoke", "ssh://down", "true"), "ssh://down", "Connection refused")
	})
	t.Run("refused key", func(t *testing.T) {
		oneLineError(t, c.Run("new", "ssh://badkey"), "ssh://badkey", "Permission denied")
	})
	t.Run("changed host key", func(t *testing.T) {
		oneLineError(t, c.Run("list", "ssh://changed"), "ssh://changed", "host key of changed has changed")
	})
	t.Run("unknown host key", func(t *testing.T) {
		oneLineError(t, c.Run("invoke", "ssh://unknownkey", "true"), "ssh://unknownkey", "host key verification failed")
	})
	t.Run("bad address", func(t *testing.T) {
		r := c.Run("invoke", "ssh://-oProxyCommand=x", "true")
		if r.Code != 255 || !strings.Contains(r.Stderr, "cannot start with '-'") {
			t.Fatalf("exit %d %s", r.Code, r.Stderr)
		}
	})
	if w.sshd.Logins() != 0 {
		t.Errorf("sshd logged %d logins; none of these should have logged in", w.sshd.Logins())
	}
}

// TestSSHUnknownArch: a host whose uname says sparc64 gets a clear error
// and nothing uploaded.
func TestSSHUnknownArch(t *testing.T) {
	bin := ShortTempDir(t)
	appendFile(t, filepath.Join(bin, "uname"), "#!/bin/sh\ncase $1 in -m) echo sparc64;; *) echo Linux;; esac\n")
	os.Chmod(filepath.Join(bin, "uname"), 0o755)
	w := newSSHWorld(t, "SetEnv PATH="+bin+":/usr/local/bin:/usr/bin:/bin")
	r := w.client.Run("new", "ssh://web1")
	oneLineError(t, r, "ssh://web1", `unknown architecture "Linux"/"sparc64"`)
	if left, _ := filepath.Glob(filepath.Join(w.user.Home, ".local", "share", "tether", "bin", "*")); len(left) > 0 {
		t.Errorf("something was uploaded: %v", left)
	}
}

// TestSSHNoisyLogin: a login banner and a profile printing junk on stdout
// and stderr (bash reads ~/.bashrc for `ssh host cmd`) break nothing.
func TestSSHNoisyLogin(t *testing.T) {
	u := EnsureUser(t, "tt-ssh4")
	if out, err := exec.Command("usermod", "-s", "/bin/bash", u.Name).CombinedOutput(); err != nil {
		t.Fatalf("usermod -s: %v %s", err, out)
	}
	wipeTether(t, u)
	rc := filepath.Join(u.Home, ".bashrc")
	os.WriteFile(rc, []byte("echo 'junk from bashrc: key=value tether-'\necho 'more junk' >&2\nprintf 'no newline'\n"), 0o644)
	t.Cleanup(func() { os.Remove(rc) })
	c := NewClient(t)
	dir := ShortTempDir(t)
	banner := filepath.Join(dir, "banner")
	appendFile(t, banner, "*** Authorized use only. SSH-2.0-not-a-version ***\n")
	s := StartSSHD(t, SSHDOptions{Users: []OSUser{u}, Keys: []string{c.PubKey()}, Extra: "Banner " + banner})
	cfg := s.SSHConfig(t, c.Home, c.Key, u.Name, "", "web1")
	c.Env = append(c.Env, "TETHER_SSH_CONFIG="+cfg)
	t.Cleanup(func() { StopSSHMasters(filepath.Join(c.Home, ".cache", "tether", "ssh")) })
	if got := c.MustRun("new", "--name", "s", "ssh://web1"); got != "ssh://web1/s\n" {
		t.Fatalf("new printed %q", got)
	}
	c.MustRun("invoke", "ssh://web1/s", "v=ok")
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $v"); got != "ok\n" {
		t.Fatalf("invoke printed %q", got)
	}
}

// TestSSHNoexecDir: binaries going to a file system mounted noexec (a
// tmpfs here, as a noexec home would be) give a clear error that says
// what to configure; TETHER_REMOTE_DIR elsewhere then works.
func TestSSHNoexecDir(t *testing.T) {
	w := newSSHWorld(t, "")
	dir := filepath.Join(ShortTempDir(t), "noexec")
	os.MkdirAll(dir, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	os.Chown(dir, w.user.UID, w.user.GID)
	c := w.client
	base := c.Env
	c.Env = append(base, "TETHER_REMOTE_DIR="+dir)
	oneLineError(t, c.Run("new", "ssh://web1"), "ssh://web1", "TETHER_REMOTE_DIR")
	if left, _ := filepath.Glob(filepath.Join(dir, "*", "*")); len(left) > 0 {
		t.Errorf("left on the host: %v", left)
	}
	ok := filepath.Join(ShortTempDir(t), "bin")
	os.MkdirAll(ok, 0o755)
	os.Chown(ok, w.user.UID, w.user.GID)
	c.Env = append(base, "TETHER_REMOTE_DIR="+ok)
	if got := c.MustRun("invoke", "ssh://web1", "echo fine"); got != "fine\n" {
		t.Fatalf("with TETHER_REMOTE_DIR on an exec file system: %q", got)
	}
	if bins, _ := filepath.Glob(filepath.Join(ok, "*", "tether")); len(bins) != 1 {
		t.Fatalf("binaries in %s: %v", ok, bins)
	}
}

// TestSSHBareHostsTransport: TETHER_TRANSPORT=ssh, or transport = "ssh" in
// the client config, makes a bare host mean ssh://; addresses print and
// are remembered with ssh://, so they keep their transport without it.
func TestSSHBareHostsTransport(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	base := c.Env
	c.Env = append(base, "TETHER_TRANSPORT=ssh")
	if got := c.MustRun("new", "--name", "s", "web1"); got != "ssh://web1/s\n" {
		t.Fatalf("new web1 with TETHER_TRANSPORT=ssh printed %q", got)
	}
	c.MustRun("invoke", "web1/s", "v=1")
	c.Env = base
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $v"); got != "1\n" {
		t.Fatalf("state: %q", got)
	}
	if !strings.Contains(c.MustRun("list"), "ssh://web1/s") {
		t.Fatal("the registry does not remember ssh://web1/s")
	}
	cfgDir := filepath.Join(c.Home, ".config", "tether")
	os.MkdirAll(cfgDir, 0o700)
	appendFile(t, filepath.Join(cfgDir, "config.toml"), "transport = \"ssh\"\n")
	if got := c.MustRun("invoke", "web1/s", "echo $v"); got != "1\n" {
		t.Fatalf("with transport = \"ssh\" in config.toml: %q", got)
	}
	c.Env = append(base, "TETHER_TRANSPORT=carrier-pigeon")
	r := c.Run("list")
	if r.Code != 255 || !strings.Contains(r.Stderr, `TETHER_TRANSPORT = "carrier-pigeon": use "ssh"`) {
		t.Fatalf("bad TETHER_TRANSPORT: exit %d %s", r.Code, r.Stderr)
	}
}
