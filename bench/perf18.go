package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-sh/tether/internal/wire"
)

// ---- Figure 11: input throughput and imported proxy commands (#18) ----
//
// Input: N bytes of zeros written into the client's stdin, read on the host
// by `cat >/dev/null`, through `tether invoke` and through ssh -c
// aes128-gcm in the same run. Proxy: one call of a command made by `tether
// import` (a module command that runs `true`), against a fresh `tether
// invoke H/S true` of the same client, both measured in turns.

func (b *bench) figPerf18(r *results, cfg config, sshd *sshdProc) error {
	const fig = "11. input throughput, imported proxy command"
	fmt.Fprintln(os.Stderr, "figure 11: input throughput, proxy command")
	ctx := context.Background()
	n := cfg.tputBytes
	mib := float64(n) / (1 << 20)
	label := fmt.Sprintf("%d MiB", n>>20)
	rate := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = mib / d.Seconds()
		}
		return out
	}
	// feed runs cmd with n zero bytes on its stdin (a pipe fed by this
	// process, as a shell pipeline would).
	feed := func(cmd *exec.Cmd) (time.Duration, error) {
		var errb bytes.Buffer
		cmd.Stdin = io.LimitReader(zeros{}, n)
		cmd.Stdout, cmd.Stderr = devNull, &errb
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if err != nil {
			return d, fmt.Errorf("%v: %v: %s", cmd.Args, err, strings.TrimSpace(errb.String()))
		}
		return d, nil
	}

	modDir := filepath.Join(b.dir, "perf18-modules")
	if err := writeBenchModule(modDir); err != nil {
		return err
	}
	a, err := b.startAgentArgs("perf18", "--modules", modDir)
	if err != nil {
		return err
	}
	defer a.stop()
	sess, err := b.newSessions(a, 1)
	if err != nil {
		return err
	}

	ds, errs := repeat(r, "tether invoke cat", cfg.tputReps, func() (time.Duration, error) {
		return feed(b.tetherCmd(ctx, "invoke", sess[0], "cat >/dev/null"))
	})
	x := r.add(newRow(fig, "tether invoke H/S 'cat >/dev/null' < "+label+" of stdin (fresh CLI)", "MiB/s", rate(ds)))
	x.Errors = errs
	in := x
	if sshd != nil {
		ds, errs = repeat(r, "ssh cat", cfg.tputReps, func() (time.Duration, error) {
			return feed(sshd.command(ctx, []string{"-c", "aes128-gcm@openssh.com"}, "cat >/dev/null"))
		})
		x = r.add(newRow(fig, "ssh -c aes128-gcm host 'cat >/dev/null' < "+label+" of stdin", "MiB/s", rate(ds)))
		x.Errors = errs
		r.ratio(in, x.Name)
	}

	// The proxy: import the module into the bench's client home.
	if out, err := b.tether(nil, "import", "--prefix", "b", sess[0], "benchmod"); err != nil {
		return fmt.Errorf("tether import: %v: %s", err, out)
	}
	proxy := filepath.Join(b.home, ".local", "share", "tether", "bin", "btrue") // a name without a dash gets the prefix in front
	if _, err := os.Stat(proxy); err != nil {
		return fmt.Errorf("tether import made no proxy: %w", err)
	}
	proxyCmd := func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, proxy)
		cmd.Env = []string{"HOME=" + b.home, "USER=" + b.user, "PATH=" + filepath.Dir(b.bin) + ":" + os.Getenv("PATH"), "SSH_AUTH_SOCK="}
		cmd.WaitDelay = 5 * time.Second
		return cmd
	}
	invoke := func() *exec.Cmd { return b.tetherCmd(ctx, "invoke", sess[0], "true") }
	for i := 0; i < 3; i++ { // warm-up: page cache, the implicit session opened
		timeRun(proxyCmd())
		timeRun(invoke())
	}
	var pDs, iDs []time.Duration
	pErrs, iErrs := 0, 0
	for i := 0; i < cfg.cliN; i++ {
		if d, err := timeRun(proxyCmd()); err != nil {
			if pErrs++; pErrs <= 3 {
				r.problem("proxy: %v", err)
			}
		} else {
			pDs = append(pDs, d)
		}
		if d, err := timeRun(invoke()); err != nil {
			if iErrs++; iErrs <= 3 {
				r.problem("invoke: %v", err)
			}
		} else {
			iDs = append(iDs, d)
		}
	}
	ref := r.add(newRow(fig, "tether invoke H/S true (fresh CLI, in turns with the proxy)", "ms", durs(iDs, "ms")))
	ref.Errors = iErrs
	x = r.add(newRow(fig, "imported proxy command (module command `true`, fresh CLI)", "ms", durs(pDs, "ms")))
	x.Errors = pErrs
	r.ratio(x, ref.Name)
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// writeBenchModule makes a module "benchmod" whose one command, true, does nothing.
func writeBenchModule(dir string) error {
	m := filepath.Join(dir, "benchmod")
	if err := os.MkdirAll(filepath.Join(m, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(m, "module.toml"), []byte("name = \"benchmod\"\nversion = \"1.0\"\ndescription = \"bench\"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m, "bin", "true"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
}

// startAgentArgs is startAgent with extra serve flags (and no config set).
func (b *bench) startAgentArgs(name string, extra ...string) (*agentProc, error) {
	d := filepath.Join(b.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	ak := filepath.Join(d, "authorized_keys")
	pub, _ := os.ReadFile(b.key + ".pub")
	if err := os.WriteFile(ak, pub, 0o600); err != nil {
		return nil, err
	}
	if _, err := b.writeShellPolicy(d); err != nil {
		return nil, err
	}
	a := &agentProc{state: filepath.Join(d, "st"), log: filepath.Join(d, "agent.log"), done: make(chan struct{})}
	addrFile := filepath.Join(d, "addr")
	os.Remove(addrFile)
	logf, err := os.Create(a.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"serve", "--listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--state", a.state, "--authorized-keys", ak, "--log-level", "warn"}
	if _, err := os.Stat(filepath.Join(d, "policy.toml")); err == nil {
		args = append(args, "--policy", filepath.Join(d, "policy.toml"))
	}
	a.cmd = exec.Command(b.bin, append(args, extra...)...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	b.agents = append(b.agents, a)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s, err := os.ReadFile(addrFile); err == nil && strings.HasSuffix(string(s), "\n") {
			a.addr = strings.TrimSpace(string(s))
			break
		}
		select {
		case <-a.done:
			l, _ := os.ReadFile(a.log)
			return nil, fmt.Errorf("agent exited at start: %s", l)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("agent did not listen within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b.client.ID == "" { // as startAgent: the CLI's identity, made by its first run
		b.tether(nil, "list", a.addr)
		if id, err := os.ReadFile(filepath.Join(b.home, ".config", "tether", "client-id")); err == nil {
			h, _ := os.Hostname()
			cid := strings.TrimSpace(string(id))
			b.client = wire.Client{ID: cid, Host: fmt.Sprintf("%s (client %s)", h, cid[:min(6, len(cid))])}
		}
	}
	return a, nil
}
