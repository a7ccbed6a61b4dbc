package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestSSHHabitsDirect: targets served by a Tether agent follow ssh_config
// as read by the user's ssh (ssh -G): a Host alias's HostName, User and
// IdentityFile apply, its Port (sshd's) does not; -p, -o Port=, -o
// User=, -F and TETHER_SSH_CONFIG are taken before the targets as ssh
// takes them; ProxyJump and -J reach the agent through a bastion (ssh -W).
func TestSSHHabitsDirect(t *testing.T) {
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	port := a.Port()
	// Another client machine whose own key the agent does not know: only
	// the IdentityFile in ssh_config gets it in.
	o := NewClient(t)
	u := EnsureUser(t, "tt-ssh")
	bastion := StartSSHD(t, SSHDOptions{Users: []OSUser{u}, Keys: []string{c.PubKey()}})
	cfg := bastion.SSHConfig(t, o.Home, c.Key, u.Name, "", "bastion")
	appendFile(t, cfg, fmt.Sprintf(`Host agent1
  HostName 127.0.0.1
  Port 1
  IdentityFile %s
Host baduser
  HostName 127.0.0.1
  User tt-nosuchuser
  IdentityFile %s
Host behind
  HostName 127.0.0.1
  IdentityFile %s
  ProxyJump bastion
`, c.Key, c.Key, c.Key))
	t.Cleanup(func() { StopSSHMasters(filepath.Join(o.Home, ".cache", "tether", "ssh")) })

	t.Run("alias with -F and -p", func(t *testing.T) {
		if got := o.MustRun("-F", cfg, "-p", port, "invoke", "agent1", "echo alias $(id -un)"); got != "alias "+c.User+"\n" {
			t.Fatalf("invoke agent1: %q", got)
		}
	})
	t.Run("-o Port= and TETHER_SSH_CONFIG", func(t *testing.T) {
		o2 := *o
		o2.Env = append(o.Env, "TETHER_SSH_CONFIG="+cfg)
		if got := o2.MustRun("invoke", "-o", "Port="+port, "agent1", "echo o-port"); got != "o-port\n" {
			t.Fatalf("invoke -o Port=: %q", got)
		}
		if got := o2.MustRun("--ssh-option", "Port="+port, "list", "agent1"); !strings.Contains(got, "agent1") && got != "" {
			t.Logf("list: %q", got)
		}
	})
	t.Run("explicit port wins over -p", func(t *testing.T) {
		if got := o.MustRun("-F", cfg, "-p", "1", "invoke", "agent1:"+port, "echo explicit"); got != "explicit\n" {
			t.Fatalf("invoke agent1:PORT: %q", got)
		}
	})
	t.Run("ssh_config Port is sshd's, not the agent's", func(t *testing.T) {
		r := o.Run("-F", cfg, "invoke", "agent1", "true")
		if r.Code != 255 || !strings.Contains(r.Stderr, "127.0.0.1:4422") {
			t.Fatalf("agent1 without -p: want a failure to reach 127.0.0.1:4422 (Tether's port), got exit %d: %s", r.Code, r.Stderr)
		}
	})
	t.Run("User from ssh_config and -o User=", func(t *testing.T) {
		r := o.Run("-F", cfg, "-p", port, "invoke", "baduser", "true")
		if r.Code != 255 || !strings.Contains(r.Stderr, "for tt-nosuchuser") {
			t.Fatalf("baduser: want permission denied for tt-nosuchuser, got exit %d: %s", r.Code, r.Stderr)
		}
		r = o.Run("-F", cfg, "-p", port, "-o", "User=tt-other", "invoke", "agent1", "true")
		if r.Code != 255 || !strings.Contains(r.Stderr, "for tt-other") {
			t.Fatalf("-o User=: want permission denied for tt-other, got exit %d: %s", r.Code, r.Stderr)
		}
		if got := o.MustRun("-F", cfg, "-p", port, "-l", c.User, "invoke", "baduser", "echo at"); got != "at\n" {
			t.Fatalf("-l wins over ssh_config's User: %q", got)
		}
	})
	t.Run("ProxyJump and -J", func(t *testing.T) {
		before := bastion.Logins()
		if got := o.MustRun("-F", cfg, "-p", port, "invoke", "behind", "echo behind"); got != "behind\n" {
			t.Fatalf("invoke behind (ProxyJump bastion): %q", got)
		}
		if n := bastion.Logins(); n != before+1 {
			t.Fatalf("bastion logins %d → %d, want one more (ProxyJump)", before, n)
		}
		if got := o.MustRun("-F", cfg, "-J", "bastion", "-p", port, "-i", c.Key, "new", "--name", "j", "127.0.0.1"); got != "127.0.0.1/j\n" {
			t.Fatalf("new -J bastion: %q", got)
		}
		o.MustRun("-F", cfg, "-J", "bastion", "-p", port, "-i", c.Key, "invoke", "127.0.0.1/j", "v=through")
		if got := o.MustRun("-F", cfg, "-J", "bastion", "-p", port, "-i", c.Key, "invoke", "127.0.0.1/j", "echo $v"); got != "through\n" {
			t.Fatalf("state through -J: %q", got)
		}
		if n := bastion.Logins(); n != before+4 {
			t.Fatalf("bastion logins %d → %d, want 4 more (-J)", before, n)
		}
		r := o.Run("-F", cfg, "-J", "tt-nobody@127.0.0.1:1", "-p", port, "invoke", "agent1", "true")
		if r.Code != 255 || !strings.Contains(r.Stderr, "through tt-nobody@") || !strings.Contains(r.Stderr, "Connection refused") {
			t.Fatalf("a dead jump host: exit %d: %s", r.Code, r.Stderr)
		}
	})
	t.Run("bad -o", func(t *testing.T) {
		r := o.Run("-o", "nonsense", "invoke", "agent1", "true")
		if r.Code != 255 || !strings.Contains(r.Stderr, "use -o Key=Value") {
			t.Fatalf("bad -o: exit %d: %s", r.Code, r.Stderr)
		}
	})
}
