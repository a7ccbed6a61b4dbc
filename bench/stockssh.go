package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ---- Figure 7: the stock OpenSSH client against the agent ----
//
// `ssh -p PORT host true` against a root agent (the session channel: a
// temporary session per command, as `tether invoke H`) and against the
// private sshd, both logging in as the same clean account (sshUser), with
// the same client options, measured in turns so that load on the machine
// weighs on both alike.

func (b *bench) figStockSSH(r *results, cfg config, sshd *sshdProc) error {
	const fig = "7. stock ssh client against the agent"
	fmt.Fprintln(os.Stderr, "figure 7: ssh host true, agent vs sshd")
	if sshd == nil {
		var err error
		if sshd, err = b.startSSHD(); err != nil {
			return fmt.Errorf("private sshd: %w", err)
		}
	}
	a, err := b.startSSHAgent()
	if err != nil {
		return err
	}
	defer a.stop()
	_, port, _ := strings.Cut(a.addr, ":")
	kh := filepath.Join(b.dir, "stockssh_known_hosts")
	ctx := context.Background()
	agentTrue := func() *exec.Cmd {
		args := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=no",
			"-o", "HostKeyAlias=benchtether", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
			"-i", sshd.key, "-p", port, "-l", sshUser, "127.0.0.1", "true"}
		cmd := exec.CommandContext(ctx, "ssh", args...)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + sshd.dir}
		return cmd
	}
	// Warm both (host key recorded, page cache) before measuring.
	if out, err := agentTrue().CombinedOutput(); err != nil {
		return fmt.Errorf("ssh to the agent: %v: %s", err, out)
	}
	timeRun(sshd.command(ctx, nil, "true"))
	n := cfg.sshN
	var agentDs, sshdDs []time.Duration
	agentErrs, sshdErrs := 0, 0
	for i := 0; i < n; i++ {
		if d, err := timeRun(agentTrue()); err != nil {
			agentErrs++
			r.problem("stockssh: ssh true via the agent: %v", err)
		} else {
			agentDs = append(agentDs, d)
		}
		if d, err := timeRun(sshd.command(ctx, nil, "true")); err != nil {
			sshdErrs++
		} else {
			sshdDs = append(sshdDs, d)
		}
	}
	ref := r.add(newRow(fig, "ssh host true via the private sshd (new connection, default kex; in turns with the agent)", "ms", durs(sshdDs, "ms")))
	ref.Errors = sshdErrs
	x := r.add(newRow(fig, "ssh host true via the tether agent (new connection, temporary session; in turns with sshd)", "ms", durs(agentDs, "ms")))
	x.Errors = agentErrs
	r.ratio(x, ref.Name)
	if x.Ratio > 1.0 {
		r.problem("stockssh: ssh host true via the agent is %.2f× sshd (want ≤ 1.0×)", x.Ratio)
	}
	r.note("figure 7: both sides log in as %s; the agent runs as root (sessions in cgroups) and its sessions are %s; load average %s", sshUser, map[bool]string{true: b.shell, false: "the default shell"}[b.shell != ""], loadavg())
	return nil
}

// startSSHAgent starts a root agent whose authorized keys, and whose
// session directories, sshUser can reach (the agent reads the keys as the
// user, with sshd's StrictModes; her session hosts run as her): outside the
// bench workspace, which is below root's 0700 home.
func (b *bench) startSSHAgent() (*agentProc, error) {
	d, err := os.MkdirTemp("/var/lib", "tether-bench-stockssh-")
	if err != nil {
		return nil, err
	}
	os.Chmod(d, 0o755)
	b.atExit(func() { os.RemoveAll(d) })
	ak := filepath.Join(d, "authorized_keys")
	pub, _ := os.ReadFile(b.key + ".pub")
	if err := os.WriteFile(ak, pub, 0o644); err != nil {
		return nil, err
	}
	return b.spawnAgent(d, ak)
}
