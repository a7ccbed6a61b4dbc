package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/wire"
)

// ---- Figure 5b: idle sessions of an agent that runs as a normal user ----
//
// A root agent enforces limits with cgroups; a user's own agent has none and
// falls back to rlimits and a /proc monitor in each session host. That
// monitor once scanned /proc every 50 ms, idle or not (~11 % of a core per
// idle session), so idle CPU is measured in user mode too.

const idleUserSessions = 100

func (b *bench) figIdleUser(r *results, cfg config) error {
	const fig = "5. memory per idle session (PSS)"
	fmt.Fprintln(os.Stderr, "figure 5b: idle sessions, agent as a normal user")
	a, login, err := b.startUserAgent()
	if err != nil {
		return err
	}
	n := idleUserSessions
	if cfg.quick {
		n = 20
	}
	d := b.dialer()
	// Its own known_hosts: an earlier figure's agent may have had this port.
	d.KnownHosts = &sshauth.KnownHosts{Path: filepath.Join(b.dir, "idleuser_known_hosts"), DefaultPort: client.DefaultPort}
	d.DefaultUser = login
	ctx := context.Background()
	c, err := d.Dial(ctx, mustTarget(a.addr))
	if err != nil {
		return fmt.Errorf("dial the user-mode agent: %w", err)
	}
	defer c.Close()
	var made []string
	for i := 0; i < n; i++ {
		resp, err := c.Call(ctx, wire.Request{Op: wire.OpNew, Client: b.client})
		if err != nil {
			return fmt.Errorf("user-mode session %d: %w", i+1, err)
		}
		made = append(made, resp.Session.Name)
	}
	// Each session runs one command that starts a process, so that the
	// monitor has had something to watch, then goes idle.
	for _, s := range made[:min(10, len(made))] {
		if err := b.runIn(ctx, d, c, a.addr+"/"+s, "/bin/true"); err != nil {
			r.problem("idle-user: running a command in %s: %v", s, err)
		}
	}
	settle()
	pids := a.sessionPIDs()
	cpu := idleCPU(pids, 3*time.Second)
	x := r.add(newRow(fig, fmt.Sprintf("tether, agent as a normal user (%s, rlimit fallback): CPU used by %d idle session hosts (100 = one core)", login, len(pids)), "%", []float64{cpu}))
	x.Extra = map[string]any{"sessions": len(pids), "per_session_percent": cpu / float64(max(len(pids), 1)), "load_average": loadavg()}
	if !strings.Contains(readLog(a), "rlimit") {
		r.problem("idle-user: the agent's log does not say it uses the rlimit fallback")
	}
	return nil
}

// runIn runs one command in a session through an open connection.
func (b *bench) runIn(ctx context.Context, d *client.Dialer, c *client.Conn, target, command string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := d.Run(ctx, c, client.RunSpec{Target: mustTarget(target), Request: wire.Request{Command: command}, Stdout: io.Discard, Stderr: io.Discard})
	return err
}

func readLog(a *agentProc) string {
	l, _ := os.ReadFile(a.log)
	return string(l)
}

// startUserAgent starts `tether serve` as a normal user: the bench's own
// user when it is not root, else the benchmark login (sshUser) with a
// workspace and a copy of the binary it owns.
func (b *bench) startUserAgent() (*agentProc, string, error) {
	if os.Geteuid() != 0 {
		a, err := b.startAgent("user", idleUserSessions+10)
		return a, b.user, err
	}
	if err := ensureSSHUser(); err != nil {
		return nil, "", err
	}
	u, err := user.Lookup(sshUser)
	if err != nil {
		return nil, "", err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// In the user's home: like sshd, the agent refuses an authorized_keys
	// file below a world-writable directory such as /tmp.
	dir, err := os.MkdirTemp(u.HomeDir, "tether-bench-")
	if err != nil {
		return nil, "", err
	}
	b.atExit(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "tether")
	data, err := os.ReadFile(b.bin)
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		return nil, "", err
	}
	ak := filepath.Join(dir, "authorized_keys")
	pub, _ := os.ReadFile(b.key + ".pub")
	if err := os.WriteFile(ak, pub, 0o600); err != nil {
		return nil, "", err
	}
	owned := []string{dir, bin, ak}
	pol, err := b.writeShellPolicy(dir)
	if err != nil {
		return nil, "", err
	}
	if pol != "" {
		owned = append(owned, pol)
	}
	for _, p := range owned {
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, "", err
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, "", err
	}
	a := &agentProc{state: filepath.Join(dir, "st"), log: filepath.Join(dir, "agent.log"), done: make(chan struct{})}
	addrFile := filepath.Join(dir, "addr")
	logf, err := os.Create(a.log)
	if err != nil {
		return nil, "", err
	}
	defer logf.Close()
	a.cmd = exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--state", a.state, "--authorized-keys", ak, "--policy", filepath.Join(dir, "policy.toml"), "--log-level", "info")
	a.cmd.Env = []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username, "PATH=/usr/local/bin:/usr/bin:/bin"}
	a.cmd.Dir = dir
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	b.agents = append(b.agents, a)
	if err := a.awaitAddr(addrFile); err != nil {
		return nil, "", err
	}
	// Raise MaxShellsPerUser as the agent's own user would (an admin in
	// user mode is the user).
	d := b.dialer()
	// Its own known_hosts: an earlier figure's agent may have had this port.
	d.KnownHosts = &sshauth.KnownHosts{Path: filepath.Join(b.dir, "idleuser_known_hosts"), DefaultPort: client.DefaultPort}
	d.DefaultUser = u.Username
	c, err := d.Dial(context.Background(), mustTarget(a.addr))
	if err != nil {
		return nil, "", fmt.Errorf("dial the user-mode agent: %w", err)
	}
	defer c.Close()
	if _, err := c.Call(context.Background(), wire.Request{Op: wire.OpConfigSet, Key: "MaxShellsPerUser", Value: strconv.Itoa(idleUserSessions + 10), Client: b.client}); err != nil {
		return nil, "", fmt.Errorf("raise MaxShellsPerUser on the user-mode agent: %w", err)
	}
	return a, u.Username, nil
}

// awaitAddr waits for the agent to write its listening address.
func (a *agentProc) awaitAddr(addrFile string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s, err := os.ReadFile(addrFile); err == nil && strings.HasSuffix(string(s), "\n") {
			a.addr = strings.TrimSpace(string(s))
			return nil
		}
		select {
		case <-a.done:
			return fmt.Errorf("agent exited at start: %s", readLog(a))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not listen within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
