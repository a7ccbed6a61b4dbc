package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/agent"
	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

// runProfiles profiles where tether loses to OpenSSH: the agent runs
// in-process (internal/agent, session hosts from the tether binary) so one
// Go CPU profile covers client and agent; the session host, which takes no
// profiling flags, is sampled with perf and its syscalls timed with strace.
// Each workload writes DIR/NAME.{cpu.pprof,top.txt,perf.txt,strace.txt}.
func (b *bench) runProfiles(dir string, cfg config) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d := filepath.Join(b.dir, "prof")
	os.MkdirAll(d, 0o755)
	ak := filepath.Join(d, "authorized_keys")
	pub, _ := os.ReadFile(b.key + ".pub")
	os.WriteFile(ak, pub, 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Options{StateDir: filepath.Join(d, "st"), AuthorizedKeys: ak, PolicyPath: filepath.Join(d, "policy.toml"),
		Executable: b.bin, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ag.Serve(ctx, ln)
	addr := ln.Addr().String()
	// The CLI identity and known_hosts file, as the other figures use.
	if out, err := b.tether(nil, "config", "get", addr, "IdleTimeout"); err != nil {
		return fmt.Errorf("tether config get: %v: %s", err, out)
	}
	b.startAgentIdentity()
	dl := b.dialer()
	c, err := dl.Dial(ctx, mustTarget(addr))
	if err != nil {
		return err
	}
	resp, err := c.Call(ctx, wire.Request{Op: wire.OpNew, Client: b.client})
	if err != nil {
		return err
	}
	t := mustTarget(addr + "/" + resp.Session.Name)
	hostPID := 0
	metas, _ := filepath.Glob(filepath.Join(d, "st", "s", "*", resp.Session.Name, "meta.json"))
	if len(metas) == 1 {
		ap := &agentProc{state: filepath.Join(d, "st")}
		if p := ap.sessionPIDs(); len(p) == 1 {
			hostPID = p[0]
		}
	}
	fmt.Fprintf(os.Stderr, "profile: in-process agent %s, session %s, session host pid %d\n", addr, t, hostPID)

	profileRun := func(name string, work func() error) error {
		fmt.Fprintf(os.Stderr, "profile: %s\n", name)
		base := filepath.Join(dir, name)
		var perf, strace *exec.Cmd
		if hostPID > 0 {
			if _, err := exec.LookPath("perf"); err == nil {
				perf = exec.Command("perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-p", fmt.Sprint(hostPID), "-o", base+".perf.data")
				perf.Stdout, perf.Stderr = io.Discard, io.Discard
				perf.Start()
			}
		}
		f, err := os.Create(base + ".cpu.pprof")
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		start := time.Now()
		werr := work()
		el := time.Since(start)
		pprof.StopCPUProfile()
		f.Close()
		if perf != nil {
			perf.Process.Signal(syscall.SIGINT)
			perf.Wait()
			out, _ := exec.Command("perf", "report", "-i", base+".perf.data", "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "1.5", "-g", "none").CombinedOutput()
			os.WriteFile(base+".sessionhost.perf.txt", out, 0o644)
			os.Remove(base + ".perf.data")
		}
		out, _ := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "35", base+".cpu.pprof").CombinedOutput()
		os.WriteFile(base+".client+agent.top.txt", out, 0o644)
		out, _ = exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount", "45", base+".cpu.pprof").CombinedOutput()
		os.WriteFile(base+".client+agent.cum.txt", out, 0o644)
		// Wall time by syscall in the session host (fsync and friends are
		// waits, not CPU: perf and pprof do not show them).
		if hostPID > 0 {
			if _, err := exec.LookPath("strace"); err == nil {
				strace = exec.Command("strace", "-f", "-c", "-w", "-p", fmt.Sprint(hostPID), "-o", base+".sessionhost.strace.txt")
				strace.Stdout, strace.Stderr = io.Discard, io.Discard
				strace.Start()
				time.Sleep(300 * time.Millisecond)
				work()
				strace.Process.Signal(syscall.SIGINT)
				strace.Wait()
			}
		}
		fmt.Fprintf(os.Stderr, "profile: %s took %s (err %v)\n", name, el.Round(time.Millisecond), werr)
		return werr
	}
	runTrue := func(n int) func() error {
		return func() error {
			busy := 0
			for i := 0; i < n; i++ {
				_, err := dl.Run(ctx, c, client.RunSpec{Target: t, Request: wire.Request{Command: "true"}, Stdout: io.Discard, Stderr: io.Discard, KeepChannel: true})
				if err != nil {
					if strings.Contains(err.Error(), "busy") {
						busy++
						continue
					}
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "profile: %d of %d runs refused as busy\n", busy, n)
			return nil
		}
	}
	if err := profileRun("run-true", runTrue(cfg.goN)); err != nil {
		return err
	}
	if err := profileRun("call-status", func() error {
		for i := 0; i < cfg.goN; i++ {
			if _, err := c.Call(ctx, wire.Request{Op: wire.OpStatus, Session: t.Session, Client: b.client}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := profileRun("throughput", func() error {
		cw := &countWriter{}
		_, err := dl.Run(ctx, c, client.RunSpec{Target: t, Request: wire.Request{Command: fmt.Sprintf("head -c %d /dev/zero", cfg.tputBytes)}, Stdout: cw, Stderr: io.Discard})
		return err
	}); err != nil {
		return err
	}
	// Fan-out: one run of `true` in each of many sessions, as `tether
	// invoke --throttle 256` does (client and agent in this profile; the
	// session hosts are many processes, see their strace above).
	var fan []client.Target
	if _, err := c.Call(ctx, wire.Request{Op: wire.OpConfigSet, Key: "MaxShellsPerUser", Value: "2000", Client: b.client}); err != nil {
		return err
	}
	for range cfg.profileFanN() {
		resp, err := c.Call(ctx, wire.Request{Op: wire.OpNew, Client: b.client})
		if err != nil {
			return err
		}
		fan = append(fan, mustTarget(addr+"/"+resp.Session.Name))
	}
	hosts := &agentProc{state: filepath.Join(d, "st")}
	cpuBefore, selfBefore := procsCPU(hosts.sessionPIDs()), procsCPU([]int{os.Getpid()})
	fanStart := time.Now()
	if err := profileRun("fanout", func() error {
		f := &client.FanOut{Dialer: dl, Throttle: 256, Stdout: io.Discard, Stderr: io.Discard}
		for _, r := range f.Invoke(ctx, fan, wire.Request{Command: "true"}, nil) {
			if r.Err != nil {
				return fmt.Errorf("%s: %w", r.Target, r.Err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// CPU per target, by process kind (the profile's strace pass runs the
	// workload twice).
	n := 2 * time.Duration(len(fan))
	fmt.Fprintf(os.Stderr, "profile: fanout of %d, twice, in %s: CPU per target: session hosts %s, client+agent %s\n", len(fan), time.Since(fanStart).Round(time.Millisecond),
		(procsCPU(hosts.sessionPIDs())-cpuBefore)/n, (procsCPU([]int{os.Getpid()})-selfBefore)/n)
	for _, t := range fan {
		c.Call(ctx, wire.Request{Op: wire.OpRemove, Session: t.Session, Client: b.client})
	}
	// The fresh CLI: where its ~20 ms go before main and after.
	out, _ := exec.Command("sh", "-c", "GODEBUG=inittrace=1 "+b.bin+" version 2>&1 >/dev/null | sort -t@ -k2 | awk '{print $2, $5, $6}' | sort -k2 -rn | head -15").CombinedOutput()
	os.WriteFile(filepath.Join(dir, "cli-inittrace.txt"), out, 0o644)
	c.Call(ctx, wire.Request{Op: wire.OpRemove, Session: t.Session, Client: b.client})
	c.Close()
	fmt.Fprintf(os.Stderr, "profile: wrote %s\n", dir)
	return nil
}

// startAgentIdentity reads the CLI's client id once a CLI command made it.
func (b *bench) startAgentIdentity() {
	if b.client.ID != "" {
		return
	}
	id, err := os.ReadFile(filepath.Join(b.home, ".config", "tether", "client-id"))
	if err == nil {
		h, _ := os.Hostname()
		cid := strings.TrimSpace(string(id))
		b.client = wire.Client{ID: cid, Host: fmt.Sprintf("%s (client %s)", h, cid[:min(6, len(cid))])}
	}
}

// profileFanN is how many sessions the fan-out profile runs `true` in.
func (c config) profileFanN() int {
	if c.quick {
		return 50
	}
	return 300
}
