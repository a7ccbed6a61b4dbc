package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHD is a private OpenSSH sshd on 127.0.0.1 (as bench/sshd.go): its own
// port, host key, config, AuthorizedKeysFile and log; never the machine's
// sshd or anyone's ~/.ssh. It logs in its test users.
type SSHD struct {
	t       testing.TB
	Dir     string
	Port    int
	Users   []OSUser
	HostPub string // the host key line, for known_hosts
	Log     string // sshd's log (LogLevel VERBOSE: one "Accepted publickey" per login)
	cfg     string
	cmd     *exec.Cmd
}

// SSHDOptions configure StartSSHD.
type SSHDOptions struct {
	Users    []OSUser
	Keys     []string // public key files allowed to log in
	Extra    string   // more sshd_config lines (Banner, …)
	HostKey  string   // reuse this host key file (a restart); empty: a new one
	Port     int      // 0: a free one
	DirReuse string   // reuse this directory (a restart)
}

// StartSSHD starts a private sshd; it needs root and /usr/sbin/sshd.
func StartSSHD(t testing.TB, o SSHDOptions) *SSHD {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a private sshd")
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("needs openssh-server (/usr/sbin/sshd; .ci/run installs it)")
	}
	// useradd leaves the account locked ("!"), which sshd refuses even
	// for keys; "*" is no password, not locked.
	var names []string
	for _, u := range o.Users {
		if out, err := exec.Command("usermod", "-p", "*", u.Name).CombinedOutput(); err != nil {
			t.Fatalf("usermod -p '*' %s: %v: %s", u.Name, err, out)
		}
		names = append(names, u.Name)
	}
	dir := o.DirReuse
	if dir == "" {
		dir = ShortTempDir(t)
	}
	s := &SSHD{t: t, Dir: dir, Users: o.Users, Log: filepath.Join(dir, "sshd.log")}
	hk := o.HostKey
	if hk == "" {
		hk = filepath.Join(dir, "host_ed25519_key")
		if _, err := os.Stat(hk); err != nil {
			if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v: %s", err, out)
			}
		}
	}
	pub, err := os.ReadFile(hk + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	s.HostPub = strings.TrimSpace(string(pub))
	ak := filepath.Join(dir, "authorized_keys")
	var keys []byte
	for _, k := range o.Keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b...)
	}
	os.WriteFile(ak, keys, 0o644)
	s.Port = o.Port
	if s.Port == 0 {
		s.Port = freePort(t)
	}
	s.cfg = filepath.Join(dir, "sshd_config")
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers %s
MaxStartups 100
MaxSessions 100
X11Forwarding no
AllowTcpForwarding yes
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
%s
`, s.Port, hk, ak, filepath.Join(dir, "sshd.pid"), strings.Join(names, " "), o.Extra)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *SSHD) start() {
	s.t.Helper()
	s.cmd = exec.Command("/usr/sbin/sshd", "-D", "-f", s.cfg, "-E", s.Log)
	s.cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	WaitFor(s.t, 10*time.Second, "sshd listening", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// Stop stops the listening sshd (logged-in connections' processes stay,
// as with the real one).
func (s *SSHD) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart stops and starts the listening sshd on the same port.
func (s *SSHD) Restart() {
	s.Stop()
	s.start()
}

// Logins counts the successful key logins in sshd's log.
func (s *SSHD) Logins() int {
	b, _ := os.ReadFile(s.Log)
	return strings.Count(string(b), "Accepted publickey for ")
}

// KnownHostsLine is this sshd's key as a known_hosts line.
func (s *SSHD) KnownHostsLine() string {
	return fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, s.HostPub)
}

// SSHConfig writes an ssh_config for the client: one Host block per alias
// (alias → 127.0.0.1, this sshd's port, user, the key), with a
// known_hosts file holding this sshd's key; extra lines go in each block.
// It returns the config's path.
func (s *SSHD) SSHConfig(t testing.TB, dir, key, user, extra string, aliases ...string) string {
	t.Helper()
	kh := filepath.Join(dir, "known_hosts")
	f, err := os.OpenFile(kh, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, s.KnownHostsLine())
	f.Close()
	p := filepath.Join(dir, "ssh_config")
	var b strings.Builder
	if old, err := os.ReadFile(p); err == nil {
		b.Write(old)
	}
	for _, a := range aliases {
		fmt.Fprintf(&b, `Host %s
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  LogLevel ERROR
%s
`, a, s.Port, user, key, kh, extra)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// StopSSHMasters ends the ssh ControlMasters whose sockets are in dir
// (a client's ~/.cache/tether/ssh), so none outlives its test.
func StopSSHMasters(dir string) {
	socks, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, s := range socks {
		exec.Command("ssh", "-o", "ControlPath="+s, "-O", "exit", "x").Run()
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
