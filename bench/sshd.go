package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sshUser is the login the OpenSSH side uses. root's ~/.bashrc on these
// machines runs `pyenv init` (~480 ms), and Debian's bash reads ~/.bashrc
// for `ssh host cmd` (it is built with SSH_SOURCE_BASHRC: SSH_CLIENT is set
// and the shell level is 1), even though `bash -c` is not interactive. So the
// private sshd logs in a dedicated user with /bin/bash and an empty home:
// what a clean account costs, not what one root's dotfiles cost.
const sshUser = "tetherbench"

// sshdProc is a private OpenSSH sshd on 127.0.0.1: own port, host key,
// AuthorizedKeysFile, pid file; never the system's sshd or ~/.ssh.
type sshdProc struct {
	dir, cfg, pidFile string
	port              int
	cmd               *exec.Cmd
	knownHosts        string
	sshConfig         string // client config for pdsh/xargs: Host b* -> 127.0.0.1:port
	key               string
	version           string
	masters           []*exec.Cmd
}

// ensureSSHUser creates the benchmark login if missing (no password, not
// locked, so sshd with UsePAM no accepts key logins).
func ensureSSHUser() error {
	if _, err := user.Lookup(sshUser); err == nil {
		return nil
	}
	home := "/var/lib/" + sshUser
	out, err := exec.Command("useradd", "--system", "-m", "-d", home, "-k", "/dev/null", "-s", "/bin/bash", sshUser).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", sshUser, err, out)
	}
	if out, err := exec.Command("usermod", "-p", "*", sshUser).CombinedOutput(); err != nil {
		return fmt.Errorf("usermod: %v: %s", err, out)
	}
	return nil
}

func ensureSSHD() error {
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "bench: /usr/sbin/sshd missing: apt-get install -y openssh-server")
	cmd := exec.Command("apt-get", "install", "-y", "openssh-server")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install openssh-server: %v: %s", err, out)
	}
	return nil
}

func (b *bench) startSSHD() (*sshdProc, error) {
	if err := ensureSSHD(); err != nil {
		return nil, err
	}
	if err := ensureSSHUser(); err != nil {
		return nil, err
	}
	// Outside the bench workspace (under /root, 0700): sshd reads
	// AuthorizedKeysFile as the logging-in user, who must reach it.
	dir, err := os.MkdirTemp("", "tether-bench-sshd-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	b.atExit(func() { os.RemoveAll(dir) })
	s := &sshdProc{dir: dir, key: filepath.Join(dir, "id_ed25519")}
	// The client key too: ssh refuses keys others can read, so copy it.
	kb, _ := os.ReadFile(b.key)
	os.WriteFile(s.key, kb, 0o600)
	hk := filepath.Join(s.dir, "host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	ak := filepath.Join(s.dir, "authorized_keys")
	pub, _ := os.ReadFile(b.key + ".pub")
	os.WriteFile(ak, pub, 0o644)
	s.port = freePort()
	s.pidFile = filepath.Join(s.dir, "sshd.pid")
	s.cfg = filepath.Join(s.dir, "sshd_config")
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
MaxStartups 4000
MaxSessions 100
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
Subsystem sftp internal-sftp
`, s.port, hk, ak, s.pidFile, sshUser)
	os.WriteFile(s.cfg, []byte(cfg), 0o644)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	s.cmd = exec.Command("/usr/sbin/sshd", "-D", "-f", s.cfg, "-E", filepath.Join(s.dir, "sshd.log"))
	s.cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	b.atExit(s.stop)
	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	s.sshConfig = filepath.Join(s.dir, "ssh_config")
	os.WriteFile(s.sshConfig, []byte(fmt.Sprintf(`Host *
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  StrictHostKeyChecking no
  HostKeyAlias benchsshd
  LogLevel ERROR
  BatchMode yes
`, s.port, sshUser, s.key, s.knownHosts)), 0o644)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			l, _ := os.ReadFile(filepath.Join(s.dir, "sshd.log"))
			return nil, fmt.Errorf("sshd did not listen: %s", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ := exec.Command("ssh", "-V").CombinedOutput()
	s.version = strings.TrimSpace(string(out))
	// First connection records the host key; check the login works.
	if out, err := s.command(context.Background(), nil, "true").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ssh to private sshd: %v: %s", err, out)
	}
	return s, nil
}

// sshArgs are the options of every ssh run: no user config, the bench key
// and known_hosts, a clean environment.
func (s *sshdProc) sshArgs(extra ...string) []string {
	a := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + s.knownHosts, "-o", "StrictHostKeyChecking=no",
		"-o", "HostKeyAlias=benchsshd", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-i", s.key, "-p", strconv.Itoa(s.port), "-l", sshUser}
	a = append(a, extra...)
	return append(a, "127.0.0.1")
}

// command is `ssh [opts] 127.0.0.1 remote...` with a clean environment.
func (s *sshdProc) command(ctx context.Context, opts []string, remote ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ssh", append(s.sshArgs(opts...), remote...)...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + s.dir}
	return cmd
}

// startMaster brings up a ControlMaster and returns the options that use it.
func (s *sshdProc) startMaster() ([]string, error) {
	sock := filepath.Join(s.dir, fmt.Sprintf("cm%d", len(s.masters)))
	m := s.command(context.Background(), []string{"-N", "-o", "ControlMaster=yes", "-o", "ControlPath=" + sock})
	if err := m.Start(); err != nil {
		return nil, err
	}
	s.masters = append(s.masters, m)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("ControlMaster socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return []string{"-o", "ControlMaster=no", "-o", "ControlPath=" + sock}, nil
}

func (s *sshdProc) pid() int { return s.cmd.Process.Pid }

func (s *sshdProc) stopMasters() {
	for _, m := range s.masters {
		m.Process.Kill()
		m.Wait()
	}
	s.masters = nil
}

func (s *sshdProc) stop() {
	s.stopMasters()
	if s.cmd != nil && s.cmd.Process != nil {
		// sshd -D: SIGTERM ends the listener; per-connection children go with their clients.
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
	}
}
