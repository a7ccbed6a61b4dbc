package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// stockSSH is the machine's OpenSSH client (and scp, sftp, rsync, Ansible)
// pointed at an agent: a private known_hosts with the agent's host key, the
// test key, no ~/.ssh and no config file.
type stockSSH struct {
	t       *testing.T
	a       *Agent
	login   string
	key     string
	kh      string
	home    string // HOME of the clients: nothing of root's
	hostKey ssh.PublicKey
}

func newStockSSH(t *testing.T, a *Agent, c *Client, login string) *stockSSH {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client on this machine")
	}
	b, err := os.ReadFile(filepath.Join(a.State, "host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	home := ShortTempDir(t)
	kh := filepath.Join(home, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(a.Addr)}, signer.PublicKey())
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &stockSSH{t: t, a: a, login: login, key: c.Key, kh: kh, home: home, hostKey: signer.PublicKey()}
}

// opts are the options every tool gets, as -o pairs (ssh, scp, sftp, and
// through -e for rsync).
func (s *stockSSH) opts() []string {
	return []string{"-F", "/dev/null", "-i", s.key, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + s.kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"}
}

func (s *stockSSH) env() []string {
	return []string{"HOME=" + s.home, "PATH=" + os.Getenv("PATH"), "SSH_AUTH_SOCK=", "LANG=C"}
}

// sshArgs is the argument list of `ssh ... host remote...`.
func (s *stockSSH) sshArgs(extra []string, remote ...string) []string {
	args := append(s.opts(), "-p", s.a.Port(), "-l", s.login)
	args = append(args, extra...)
	return append(append(args, "127.0.0.1"), remote...)
}

func (s *stockSSH) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = s.env()
	cmd.Dir = s.home
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs a tool to its end within two minutes.
func (s *stockSSH) run(stdin []byte, name string, args ...string) Result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.cmd(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	return r
}

func (s *stockSSH) ssh(stdin []byte, extra []string, remote ...string) Result {
	s.t.Helper()
	return s.run(stdin, "ssh", s.sshArgs(extra, remote...)...)
}

func (s *stockSSH) mustSSH(remote string) string {
	s.t.Helper()
	r := s.ssh(nil, nil, remote)
	if r.Code != 0 {
		s.t.Fatalf("ssh %q: exit %d\nstdout: %s\nstderr: %s", remote, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// stockWorld is a root agent serving tt-alice with her ~/.ssh key, and the
// stock tools logging in as her.
func stockWorld(t *testing.T, opts ...func(*AgentOptions)) (*Agent, *stockSSH, *Client, OSUser) {
	t.Helper()
	ua := EnsureUser(t, "tt-alice")
	c := NewClient(t)
	c.User = ua.Name
	ua.Authorize(t, c.PubKey())
	o := AgentOptions{AuthorizedKeys: "%h/.ssh/authorized_keys"}
	for _, f := range opts {
		f(&o)
	}
	a := StartAgent(t, o)
	return a, newStockSSH(t, a, c, ua.Name), c, ua
}

// TestStockSSHExec: `ssh host cmd` runs cmd in a temporary session as the
// user, with its exit status, stderr apart, and stdin and stdout binary-safe.
func TestStockSSHExec(t *testing.T) {
	_, s, _, ua := stockWorld(t)

	r := s.ssh(nil, nil, "echo hi; exit 3")
	if r.Stdout != "hi\n" || r.Code != 3 {
		t.Fatalf("ssh 'echo hi; exit 3': stdout %q exit %d (stderr %q); want hi, 3", r.Stdout, r.Code, r.Stderr)
	}
	if got := s.mustSSH("id -un; pwd"); got != ua.Name+"\n"+ua.Home+"\n" {
		t.Fatalf("id -un; pwd = %q, want %s and her home", got, ua.Name)
	}
	r = s.ssh(nil, nil, "echo out; echo err >&2")
	if r.Stdout != "out\n" || !strings.Contains(r.Stderr, "err\n") || strings.Contains(r.Stdout, "err") {
		t.Fatalf("stdout %q stderr %q: want out on stdout, err on stderr", r.Stdout, r.Stderr)
	}

	// Every byte value, both ways, more than the stdin window and a
	// journal chunk.
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	for i := 0; i < 256; i++ {
		data[i] = byte(i)
	}
	r = s.ssh(data, nil, "cat")
	if r.Code != 0 || !bytes.Equal([]byte(r.Stdout), data) {
		t.Fatalf("cat round trip: exit %d, %d bytes back of %d, equal %v (stderr %q)", r.Code, len(r.Stdout), len(data), bytes.Equal([]byte(r.Stdout), data), r.Stderr)
	}
	sum := sha256.Sum256(data)
	if got := strings.Fields(s.ssh(data, nil, "sha256sum").Stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("sha256sum of stdin on the host = %v, want %x", got, sum)
	}
	// stdin ends when the client sends EOF: wc sees all and ends.
	if got := strings.TrimSpace(s.ssh([]byte("a\nb\nc\n"), nil, "wc -l").Stdout); got != "3" {
		t.Fatalf("wc -l of 3 lines = %q", got)
	}
}

// TestStockSSHClientGoneStopsCommand: a temporary session's command stops
// when its ssh client goes away (there is no one to come back for it).
func TestStockSSHClientGoneStopsCommand(t *testing.T) {
	_, s, _, ua := stockWorld(t)
	marker := "tether-stockssh-" + randHex(4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := s.cmd(ctx, "ssh", s.sshArgs(nil, "echo started; sh -c 'sleep 600; :' "+marker)...)
	var out SyncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "the command to start", func() bool { return strings.Contains(out.String(), "started") })
	WaitFor(t, 10*time.Second, "its sleep", func() bool { return pgrepUser(ua.Name, marker) })
	cmd.Process.Kill()
	cmd.Wait()
	WaitFor(t, 30*time.Second, "the command to stop once its client went away", func() bool { return !pgrepUser(ua.Name, marker) })
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// pgrepUser reports whether a process of user has pattern in its command line.
func pgrepUser(user, pattern string) bool {
	return exec.Command("pgrep", "-u", user, "-f", pattern).Run() == nil
}

// sshInTmux starts ssh args... in a tmux server of its own; when ssh exits
// the pane shows "TETHER-EXIT=<status>".
func (s *stockSSH) sshInTmux(t *testing.T, cols, rows int, args ...string) *tmuxTerm {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	tt := &tmuxTerm{t: t, sock: "tether-e2e-" + randHex(6)}
	var cmd strings.Builder
	cmd.WriteString("env")
	for _, kv := range s.env() {
		cmd.WriteString(" " + shellQuote(kv))
	}
	cmd.WriteString(" ssh")
	for _, a := range args {
		cmd.WriteString(" " + shellQuote(a))
	}
	cmd.WriteString(`; echo "TETHER-EXIT=$?"; sleep 600`)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screen at the end:\n%s", tt.screen())
		}
		exec.Command("tmux", "-L", tt.sock, "kill-server").Run()
	})
	tt.tmux("-f", "/dev/null", "new-session", "-d", "-x", itoa(cols), "-y", itoa(rows), cmd.String())
	return tt
}

// waitPrompt waits for the shell's prompt ($ or #) at the end of the
// screen: what is typed before the shell reads the terminal would be echoed
// by the terminal before the prompt, and its output would share its line.
func waitPrompt(tt *tmuxTerm) {
	tt.t.Helper()
	tt.waitFor("the shell's prompt", func(sc string) bool {
		return strings.HasSuffix(sc, "$") || strings.HasSuffix(sc, "#")
	})
}

// TestStockSSHShellPTY: `ssh -t host` is an interactive shell on a
// pseudo-terminal of the client's size, TERM and window changes passed on.
func TestStockSSHShellPTY(t *testing.T) {
	_, s, _, ua := stockWorld(t)
	tt := s.sshInTmux(t, 100, 30, s.sshArgs([]string{"-tt"})...)
	waitPrompt(tt)
	tt.typeLine("echo READY-$((6*7))")
	tt.waitLine("READY-42")
	waitPrompt(tt)
	tt.typeLine("stty size; id -un; tty; echo TERM=$TERM")
	tt.waitLine("30 100")
	tt.waitLine(ua.Name)
	tt.waitFor("a pty", func(sc string) bool { return strings.Contains(sc, "/dev/pts/") })
	if tt.hasLine("TERM=") {
		t.Fatalf("TERM is empty in the shell")
	}
	tt.tmux("resize-window", "-x", "120", "-y", "40")
	waitPrompt(tt)
	tt.typeLine("clear; stty size")
	tt.waitLine("40 120")
	// Ctrl-C reaches the program on the terminal, not the shell.
	tt.typeLine("sleep 600")
	WaitFor(t, 30*time.Second, "the sleep", func() bool { return pgrepUser(ua.Name, "^sleep 600") })
	tt.keys("C-c")
	waitPrompt(tt)
	tt.typeLine("echo AFTER-SLEEP-$?")
	tt.waitLine("AFTER-SLEEP-130")
	waitPrompt(tt)
	tt.typeLine("exit 4")
	tt.waitLine("TETHER-EXIT=4")
}

// TestStockSSHAttachNamedSession: `ssh -t host attach NAME` lands in a named
// session whose shell outlives the ssh client; the next attach finds the same
// shell, its state intact; TETHER_SESSION runs commands in the session.
func TestStockSSHAttachNamedSession(t *testing.T) {
	a, s, c, _ := stockWorld(t)
	tt := s.sshInTmux(t, 100, 30, s.sshArgs([]string{"-tt"}, "attach", "work")...)
	waitPrompt(tt)
	tt.typeLine("cd /tmp; KEPT=kept-42; echo IN-$KEPT")
	tt.waitLine("IN-kept-42")
	// The client goes away (its terminal closes): the session stays,
	// its shell running.
	exec.Command("tmux", "-L", tt.sock, "kill-server").Run()
	WaitFor(t, 30*time.Second, "session work Disconnected", func() bool {
		r := c.Run("list", a.Host())
		return r.Code == 0 && strings.Contains(r.Stdout, "work") && strings.Contains(r.Stdout, "Disconnected")
	})

	tt2 := s.sshInTmux(t, 100, 30, s.sshArgs([]string{"-tt"}, "attach", "work")...)
	tt2.typeLine("echo BACK-$KEPT-$(pwd)") // typed at once: the shell's prompt came before the reattach

	tt2.waitLine("BACK-kept-42-/tmp")
	tt2.typeLine("exit")
	tt2.waitLine("TETHER-EXIT=0")
	if r := c.Run("list", a.Host()); !strings.Contains(r.Stdout, "work") {
		t.Fatalf("session work is gone after its shell exited; list:\n%s%s", r.Stdout, r.Stderr)
	}
	// Commands in the named session share its persistent shell.
	env := []string{"-o", "SetEnv=TETHER_SESSION=work"}
	if r := s.ssh(nil, env, "cd /var && echo moved"); r.Code != 0 || r.Stdout != "moved\n" {
		t.Fatalf("cd in session work: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.ssh(nil, env, "pwd"); r.Stdout != "/var\n" {
		t.Fatalf("pwd in session work after cd /var = %q (stderr %q), want /var", r.Stdout, r.Stderr)
	}
	if r := s.ssh(nil, []string{"-o", "SetEnv=TETHER_SESSION=../x"}, "true"); r.Code != 0 {
		// A bad name is refused as an env request (the client goes on,
		// in a temporary session): nothing is made of it.
		t.Fatalf("bad TETHER_SESSION: exit %d %q", r.Code, r.Stderr)
	}
	if r := s.ssh(nil, []string{"-tt"}, "attach", "../x"); r.Code != 255 || !strings.Contains(r.Stderr, "bad session name") {
		t.Fatalf("attach ../x: exit %d stderr %q; want 255 and the reason", r.Code, r.Stderr)
	}
}

// stockTree makes a tree of files with modes, a symlink, an empty
// directory and a binary file.
func stockTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"a.txt":          []byte("alpha\n"),
		"sub/b.bin":      make([]byte, 300<<10),
		"sub/deep/c.txt": []byte("gamma\n"),
		"x.sh":           []byte("#!/bin/sh\necho x\n"),
	}
	rand.Read(files["sub/b.bin"])
	for p, b := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "x.sh"), 0o755)
	os.MkdirAll(filepath.Join(root, "empty"), 0o755)
	if err := os.Symlink("a.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	return files
}

// checkTree checks the files of want under root: content, and every entry
// owned by uid.
func checkTree(t *testing.T, tool, root string, want map[string][]byte, uid int) {
	t.Helper()
	for p, b := range want {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: %s: %d bytes, %v; want %d equal bytes", tool, p, len(got), err, len(b))
		}
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("%s: %v", tool, err)
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err == nil && int(st.Uid) != uid {
			t.Errorf("%s: %s is owned by uid %d, want %d", tool, p, st.Uid, uid)
		}
		return nil
	})
}

// TestStockSSHFileTools: scp, sftp and rsync -a against a root agent, as
// tt-alice: the files are hers, and what she may not write stays unwritten.
func TestStockSSHFileTools(t *testing.T) {
	_, s, _, ua := stockWorld(t)
	src := filepath.Join(ShortTempDir(t), "tree")
	want := stockTree(t, src)
	port := s.a.Port()
	remote := s.login + "@127.0.0.1:"
	// Her home outlives the test: names of this run's own, removed after.
	run := "stockssh-" + randHex(4)
	t.Cleanup(func() {
		for _, d := range []string{"scp", "sftp", "rsync"} {
			os.RemoveAll(filepath.Join(ua.Home, run+"-"+d))
		}
	})

	t.Run("scp", func(t *testing.T) {
		if _, err := exec.LookPath("scp"); err != nil {
			t.Skip("no scp")
		}
		r := s.run(nil, "scp", append(s.opts(), "-P", port, "-r", "-p", src, remote+run+"-scp")...)
		if r.Code != 0 {
			t.Fatalf("scp -r: exit %d %s", r.Code, r.Stderr)
		}
		dst := filepath.Join(ua.Home, run+"-scp")
		checkTree(t, "scp", dst, want, ua.UID)
		if fi, err := os.Stat(filepath.Join(dst, "x.sh")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("scp -p: x.sh mode %v, %v; want 0755", fi.Mode(), err)
		}
		back := filepath.Join(ShortTempDir(t), "back.bin")
		if r := s.run(nil, "scp", append(s.opts(), "-P", port, remote+run+"-scp/sub/b.bin", back)...); r.Code != 0 {
			t.Fatalf("scp from the host: exit %d %s", r.Code, r.Stderr)
		}
		if got, _ := os.ReadFile(back); !bytes.Equal(got, want["sub/b.bin"]) {
			t.Fatalf("scp back: %d bytes, not equal", len(got))
		}
		// Her rights, not the agent's: root's directory is not hers.
		if r := s.run(nil, "scp", append(s.opts(), "-P", port, filepath.Join(src, "a.txt"), remote+"/root/stockssh-scp.txt")...); r.Code == 0 {
			t.Fatalf("scp into /root as tt-alice succeeded")
		}
		if _, err := os.Stat("/root/stockssh-scp.txt"); err == nil {
			os.Remove("/root/stockssh-scp.txt")
			t.Fatalf("scp as tt-alice wrote /root/stockssh-scp.txt")
		}
	})

	t.Run("sftp", func(t *testing.T) {
		if _, err := exec.LookPath("sftp"); err != nil {
			t.Skip("no sftp")
		}
		local := ShortTempDir(t)
		d := run + "-sftp"
		batch := fmt.Sprintf("mkdir %s\nput -r %s/sub %s/\nput %s/a.txt %s/a.txt\nls -l %s\nget %s/sub/b.bin %s/got.bin\n-put %s/a.txt /etc/stockssh-sftp.txt\n",
			d, src, d, src, d, d, d, local, src)
		r := s.run([]byte(batch), "sftp", append(s.opts(), "-P", port, "-b", "-", s.login+"@127.0.0.1")...)
		if r.Code != 0 {
			t.Fatalf("sftp batch: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		checkTree(t, "sftp", filepath.Join(ua.Home, run+"-sftp"), map[string][]byte{"a.txt": want["a.txt"], "sub/b.bin": want["sub/b.bin"], "sub/deep/c.txt": want["sub/deep/c.txt"]}, ua.UID)
		if got, _ := os.ReadFile(filepath.Join(local, "got.bin")); !bytes.Equal(got, want["sub/b.bin"]) {
			t.Fatalf("sftp get: %d bytes, not equal", len(got))
		}
		if !strings.Contains(r.Stderr, "ermission denied") {
			t.Errorf("sftp put into /etc as tt-alice: stderr %q, want permission denied", r.Stderr)
		}
		if _, err := os.Stat("/etc/stockssh-sftp.txt"); err == nil {
			os.Remove("/etc/stockssh-sftp.txt")
			t.Fatalf("sftp as tt-alice wrote /etc/stockssh-sftp.txt")
		}
	})

	t.Run("rsync", func(t *testing.T) {
		if _, err := exec.LookPath("rsync"); err != nil {
			t.Skip("no rsync (.ci/run installs it)")
		}
		e := "ssh " + strings.Join(quoteAll(append(s.opts(), "-p", port)), " ")
		r := s.run(nil, "rsync", "-a", "-e", e, src+"/", remote+run+"-rsync/")
		if r.Code != 0 {
			t.Fatalf("rsync -a push: exit %d %s", r.Code, r.Stderr)
		}
		dst := filepath.Join(ua.Home, run+"-rsync")
		checkTree(t, "rsync", dst, want, ua.UID)
		if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "a.txt" {
			t.Errorf("rsync -a: link is %q, %v; want a symlink to a.txt", l, err)
		}
		if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !fi.IsDir() {
			t.Errorf("rsync -a: empty directory missing: %v", err)
		}
		for p, m := range map[string]os.FileMode{"x.sh": 0o755, "a.txt": 0o640} {
			if fi, err := os.Stat(filepath.Join(dst, p)); err != nil || fi.Mode().Perm() != m {
				t.Errorf("rsync -a: %s mode %v, %v; want %v", p, fi.Mode().Perm(), err, m)
			}
		}
		// A second run sends nothing new; a pull brings it all back.
		if r := s.run(nil, "rsync", "-a", "--stats", "-e", e, src+"/", remote+run+"-rsync/"); r.Code != 0 || !strings.Contains(r.Stdout, "Number of regular files transferred: 0") {
			t.Errorf("rsync -a again: exit %d, want nothing transferred:\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		back := filepath.Join(ShortTempDir(t), "back")
		if r := s.run(nil, "rsync", "-a", "-e", e, remote+run+"-rsync/", back+"/"); r.Code != 0 {
			t.Fatalf("rsync -a pull: exit %d %s", r.Code, r.Stderr)
		}
		// rsync -a run by root keeps the owner: hers, as the host has it.
		checkTree(t, "rsync pull", back, want, ua.UID)
	})
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}

// TestStockSSHRefusals: agent forwarding, X11 and port forwarding are
// refused, the client says so, and the session still works.
func TestStockSSHRefusals(t *testing.T) {
	_, s, _, _ := stockWorld(t)

	t.Run("remote forward", func(t *testing.T) {
		r := s.ssh(nil, []string{"-R", "127.0.0.1:0:127.0.0.1:9"}, "echo ok")
		if r.Stdout != "ok\n" || !strings.Contains(r.Stderr, "remote port forwarding failed") {
			t.Fatalf("ssh -R: stdout %q stderr %q", r.Stdout, r.Stderr)
		}
		r = s.ssh(nil, []string{"-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9"}, "echo ok")
		if r.Code != 255 || r.Stdout != "" {
			t.Fatalf("ssh -R with ExitOnForwardFailure: exit %d stdout %q", r.Code, r.Stdout)
		}
	})

	t.Run("local forward", func(t *testing.T) {
		lport := freePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := s.cmd(ctx, "ssh", s.sshArgs([]string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:9", lport)}, "echo ok; sleep 600")...)
		var out, errb SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		WaitFor(t, 30*time.Second, "the session", func() bool { return out.String() == "ok\n" })
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lport))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		WaitFor(t, 30*time.Second, "the client to report the refusal", func() bool {
			return strings.Contains(errb.String(), "administratively prohibited: port forwarding is refused by tether agents")
		})
	})

	t.Run("X11", func(t *testing.T) {
		if _, err := exec.LookPath("xauth"); err == nil {
			t.Log("xauth present: the client sends real cookies; the refusal is the same")
		}
		r := s.run(nil, "env", append([]string{"DISPLAY=127.0.0.1:0", "ssh", "-X"}, s.sshArgs(nil, "echo ok")...)...)
		if r.Stdout != "ok\n" || !strings.Contains(r.Stderr, "X11 forwarding request failed") {
			t.Fatalf("ssh -X: stdout %q stderr %q", r.Stdout, r.Stderr)
		}
	})

	t.Run("agent forwarding", func(t *testing.T) {
		// The client asks only with an agent to forward: a real (empty)
		// ssh-agent of the test's own.
		sock := filepath.Join(ShortTempDir(t), "agent.sock")
		ag := exec.Command("ssh-agent", "-D", "-a", sock)
		if err := ag.Start(); err != nil {
			t.Skipf("no ssh-agent: %v", err)
		}
		defer func() { ag.Process.Kill(); ag.Wait() }()
		WaitFor(t, 10*time.Second, "the ssh-agent socket", func() bool { _, err := os.Stat(sock); return err == nil })
		r := s.run(nil, "env", append([]string{"SSH_AUTH_SOCK=" + sock, "ssh", "-A"}, s.sshArgs(nil, "echo ok")...)...)
		if r.Stdout != "ok\n" || !strings.Contains(r.Stderr, "auth-agent-req@openssh.com refused") {
			t.Fatalf("ssh -A: stdout %q stderr %q", r.Stdout, r.Stderr)
		}
	})
}

// TestStockSSHLimits: an ssh client's sessions count against
// MaxShellsPerUser like any other, and the refusal reaches the client.
func TestStockSSHLimits(t *testing.T) {
	_, s, _, ua := stockWorld(t, func(o *AgentOptions) {
		dir := ShortTempDir(t)
		o.State = filepath.Join(dir, "st")
		cfg := "MaxShellsPerUser = 1\n"
		if sh := Shell(); sh != "" {
			cfg += "DefaultShell = \"" + sh + "\"\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	marker := "tether-stockssh-limit-" + randHex(4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := s.cmd(ctx, "ssh", s.sshArgs(nil, "echo started; sh -c 'sleep 600; :' "+marker)...)
	var out SyncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	WaitFor(t, 30*time.Second, "the first session", func() bool { return strings.Contains(out.String(), "started") })
	r := s.ssh(nil, nil, "echo second")
	if r.Code != 255 || r.Stdout != "" || !strings.Contains(r.Stderr, "MaxShellsPerUser (1) reached for "+ua.Name) {
		t.Fatalf("second ssh over MaxShellsPerUser=1: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	cmd.Process.Kill()
	cmd.Wait()
	WaitFor(t, 30*time.Second, "a free slot once the first client went away", func() bool {
		return s.ssh(nil, nil, "echo third").Stdout == "third\n"
	})
}

// TestStockSSHAnsible: Ansible, a client nobody here wrote, manages the host
// through the agent: ping, command, copy and shell, pipelining on and off.
func TestStockSSHAnsible(t *testing.T) {
	if _, err := exec.LookPath("ansible"); err != nil {
		t.Skip("ansible is not installed (.ci/run installs ansible-core)")
	}
	_, s, _, ua := stockWorld(t)
	dir := ShortTempDir(t)
	inv := filepath.Join(dir, "inventory.ini")
	// The paths are the test's, without spaces: the INI value needs no
	// inner quoting.
	common := strings.Join([]string{"-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + s.kh,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"}, " ")
	os.WriteFile(inv, []byte(fmt.Sprintf("[agents]\ntarget ansible_host=127.0.0.1 ansible_port=%s ansible_user=%s ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args=\"%s\"\n",
		s.a.Port(), ua.Name, s.key, common)), 0o644)
	cfg := filepath.Join(dir, "ansible.cfg")
	os.WriteFile(cfg, nil, 0o644)
	src := filepath.Join(dir, "payload.txt")
	os.WriteFile(src, []byte("copied by ansible\n"), 0o644)

	for _, pipelining := range []string{"False", "True"} {
		t.Run("pipelining="+pipelining, func(t *testing.T) {
			ansible := func(args ...string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := s.cmd(ctx, "ansible", append([]string{"all", "-i", inv}, args...)...)
				cmd.Env = append(cmd.Env, "ANSIBLE_CONFIG="+cfg, "ANSIBLE_PIPELINING="+pipelining, "ANSIBLE_NOCOLOR=1",
					"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"), "ANSIBLE_FORCE_COLOR=0")
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("ansible %v: %v\n%s", args, err, out)
				}
				return string(out)
			}
			if out := ansible("-m", "ping"); !strings.Contains(out, "SUCCESS") || !strings.Contains(out, `"pong"`) {
				t.Fatalf("ansible -m ping:\n%s", out)
			}
			if out := ansible("-m", "command", "-a", "id -un"); !strings.Contains(out, "CHANGED | rc=0 >>\n"+ua.Name) {
				t.Fatalf("ansible -m command -a 'id -un':\n%s", out)
			}
			dest := filepath.Join(ua.Home, "stockssh-ansible-"+randHex(4)+".txt")
			t.Cleanup(func() { os.Remove(dest) })
			if out := ansible("-m", "copy", "-a", "src="+src+" dest="+dest+" mode=0640"); !strings.Contains(out, "CHANGED") {
				t.Fatalf("ansible -m copy:\n%s", out)
			}
			fi, err := os.Stat(dest)
			if b, _ := os.ReadFile(dest); err != nil || string(b) != "copied by ansible\n" || fi.Mode().Perm() != 0o640 ||
				int(fi.Sys().(*syscall.Stat_t).Uid) != ua.UID {
				t.Fatalf("ansible -m copy: %s: %v %q", dest, err, b)
			}
			if out := ansible("-m", "shell", "-a", "echo $((2+3)) | tr 5 V"); !strings.Contains(out, "CHANGED | rc=0 >>\nV") {
				t.Fatalf("ansible -m shell:\n%s", out)
			}
		})
	}
}

// dial is a golang.org/x/crypto/ssh client on the agent, for what the
// OpenSSH client cannot be told to do from a script (signal requests, many
// session channels on one connection).
func (s *stockSSH) dial(t *testing.T) *ssh.Client {
	t.Helper()
	b, err := os.ReadFile(s.key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.a.Addr, &ssh.ClientConfig{User: s.login, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.hostKey), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStockSSHSignalsAndChannelCap: a signal request stops the command, and
// session channels count against MaxSessionsPerConnection.
func TestStockSSHSignalsAndChannelCap(t *testing.T) {
	_, s, _, ua := stockWorld(t, func(o *AgentOptions) {
		dir := ShortTempDir(t)
		o.State = filepath.Join(dir, "st")
		cfg := "MaxSessionsPerConnection = 2\n"
		if sh := Shell(); sh != "" {
			cfg += "DefaultShell = \"" + sh + "\"\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	c := s.dial(t)
	marker := "tether-stockssh-signal-" + randHex(4)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out SyncBuffer
	sess.Stdout = &out
	if err := sess.Start("echo started; sh -c 'sleep 600; :' " + marker); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "the command", func() bool { return strings.Contains(out.String(), "started") && pgrepUser(ua.Name, marker) })

	// A second channel fits; a third is over the cap of 2.
	second, err := c.NewSession()
	if err != nil {
		t.Fatalf("second session channel under MaxSessionsPerConnection=2: %v", err)
	}
	if _, err := c.NewSession(); err == nil || !strings.Contains(err.Error(), "MaxSessionsPerConnection (2)") {
		t.Fatalf("third session channel: %v; want the MaxSessionsPerConnection refusal", err)
	}
	second.Close()

	if err := sess.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() == 0 {
			t.Fatalf("after SIGTERM: %v; want a non-zero exit status", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not end after SIGTERM")
	}
	WaitFor(t, 30*time.Second, "the signalled command gone", func() bool { return !pgrepUser(ua.Name, marker) })
}

// TestStockSSHUserModeSFTP: an agent run by the user herself serves sftp
// and exec the same way (the same child, without a change of user).
func TestStockSSHUserModeSFTP(t *testing.T) {
	ua := EnsureUser(t, "tt-alice")
	c := NewClient(t)
	c.User = ua.Name
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}, Credential: ua.Credential()})
	s := newStockSSH(t, a, c, ua.Name)
	if got := s.mustSSH("id -un"); got != ua.Name+"\n" {
		t.Fatalf("id -un via a user-mode agent = %q", got)
	}
	name := "stockssh-usermode-" + randHex(4) + ".txt"
	t.Cleanup(func() { os.Remove(filepath.Join(ua.Home, name)) })
	local := filepath.Join(ShortTempDir(t), "f.txt")
	os.WriteFile(local, []byte("user mode\n"), 0o644)
	r := s.run([]byte("put "+local+" "+name+"\n"), "sftp", append(s.opts(), "-P", a.Port(), "-b", "-", ua.Name+"@127.0.0.1")...)
	if r.Code != 0 {
		t.Fatalf("sftp put via a user-mode agent: exit %d %s", r.Code, r.Stderr)
	}
	fi, err := os.Stat(filepath.Join(ua.Home, name))
	if b, _ := os.ReadFile(filepath.Join(ua.Home, name)); err != nil || string(b) != "user mode\n" || int(fi.Sys().(*syscall.Stat_t).Uid) != ua.UID {
		t.Fatalf("the file put via a user-mode agent: %v %q", err, b)
	}
}

// TestStockSSHIdleChannelClosed: a session channel that asks for nothing is
// closed after FirstRequestTimeout (10 s), as an idle Tether channel is: idle
// channels would cost the agent for nothing.
func TestStockSSHIdleChannelClosed(t *testing.T) {
	_, s, _, _ := stockWorld(t)
	c := s.dial(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	closed := make(chan struct{})
	go func() {
		var b [1]byte
		ch.Read(b[:]) // ends when the agent closes the channel
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatalf("an idle session channel is still open after 60 s")
	}
	// The connection still serves.
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sess.Output("echo still"); err != nil || string(out) != "still\n" {
		t.Fatalf("after the idle channel: %q, %v", out, err)
	}
}
