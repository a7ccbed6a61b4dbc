package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mem is one process's smaps_rollup, in KiB.
type mem struct{ rss, pss, private int }

func readMem(pid int) (mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return mem{}, err
	}
	defer f.Close()
	var m mem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.Atoi(fs[1])
		switch fs[0] {
		case "Rss:":
			m.rss = v
		case "Pss:":
			m.pss = v
		case "Private_Clean:", "Private_Dirty:":
			m.private += v
		}
	}
	return m, sc.Err()
}

// children maps each pid to its children, from /proc.
func children() map[int][]int {
	out := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fs := strings.Fields(s[i+1:])
		if len(fs) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fs[1])
		out[ppid] = append(out[ppid], pid)
	}
	return out
}

func descendants(tree map[int][]int, pid int) []int {
	var out []int
	for _, c := range tree[pid] {
		out = append(out, c)
		out = append(out, descendants(tree, c)...)
	}
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// sumMem adds up the memory of pids (and, with tree, their descendants).
func sumMem(pids []int, tree map[int][]int, skip func(pid int) bool) (mem, int) {
	var t mem
	n := 0
	seen := map[int]bool{}
	var add func(int)
	add = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		if skip == nil || !skip(pid) {
			if m, err := readMem(pid); err == nil {
				t.rss += m.rss
				t.pss += m.pss
				t.private += m.private
				n++
			}
		}
		if tree != nil {
			for _, c := range tree[pid] {
				add(c)
			}
		}
	}
	for _, p := range pids {
		add(p)
	}
	return t, n
}

func settle() {
	time.Sleep(1500 * time.Millisecond)
}

// ---- Figure 5: memory of one idle session ----

func (b *bench) figMemory(r *results, cfg config, sshd *sshdProc) error {
	const fig = "5. memory per idle session (PSS)"
	fmt.Fprintln(os.Stderr, "figure 5: memory")
	a, err := b.startAgent("mem", 100)
	if err != nil {
		return err
	}
	// Warm the agent up (one connection, one session opened and removed), then
	// take its baseline.
	warm, err := b.newSessions(a, 1)
	if err != nil {
		return err
	}
	b.removeSessions(warm)
	settle()
	base, err := readMem(a.pid())
	if err != nil {
		return err
	}
	var made []string
	add := func(name string, n int, perSess, agentGrowth, rss, private float64, procs int) {
		x := r.add(newRow(fig, name, "KiB", []float64{perSess}))
		x.Extra = map[string]any{"sessions": n, "per_session_process_pss_kib": perSess - agentGrowth, "daemon_growth_per_session_kib": agentGrowth,
			"per_session_rss_kib": rss, "per_session_private_kib": private, "processes": procs}
	}
	// Larger N for tether are measured by the fan-out figure, on its sessions
	// (opening 1,000 sessions twice would double the run time).
	for _, n := range []int{1} {
		s, err := b.newSessions(a, n-len(made))
		made = append(made, s...)
		if err != nil {
			r.problem("memory: opening sessions: %v", err)
			break
		}
		settle()
		pids := a.sessionPIDs()
		tree := children()
		hosts, procs := sumMem(pids, tree, nil)
		ag, _ := readMem(a.pid())
		growth := float64(ag.pss-base.pss) / float64(n)
		per := float64(hosts.pss)/float64(n) + growth
		add(fmt.Sprintf("tether: session host + agent growth/N, N=%d", n), n, per, growth,
			float64(hosts.rss)/float64(n), float64(hosts.private)/float64(n), procs)
		if len(pids) != n {
			r.problem("memory: %d session host pids for %d sessions", len(pids), n)
		}
	}
	if !a.alive() {
		r.problem("memory agent died")
	}
	a.stop()

	// tmux: a private server; each session runs sh.
	if _, err := exec.LookPath("tmux"); err == nil {
		sock := filepath.Join(b.dir, "tmux.sock")
		tmux := func(args ...string) error {
			cmd := exec.Command("tmux", append([]string{"-S", sock, "-f", "/dev/null"}, args...)...)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + b.home, "TERM=xterm", "SHELL=/bin/sh"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("tmux %v: %v: %s", args, err, out)
			}
			return nil
		}
		defer tmux("kill-server")
		have := 0
		var serverBase mem
		serverPid := 0
		for _, n := range cfg.memNs {
			for ; have < n; have++ {
				if err := tmux("new-session", "-d", "-s", fmt.Sprintf("s%d", have), "sh"); err != nil {
					r.problem("%v", err)
					return nil
				}
			}
			settle()
			if serverPid == 0 {
				out, _ := exec.Command("tmux", "-S", sock, "display-message", "-p", "#{pid}").Output()
				serverPid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
			}
			tree := children()
			shs, procs := sumMem(tree[serverPid], tree, nil)
			srv, _ := readMem(serverPid)
			growth := 0.0
			if n == cfg.memNs[0] {
				serverBase = srv
				growth = float64(srv.pss) / float64(n) // the first session brings the server
			} else {
				growth = float64(srv.pss-serverBase.pss) / float64(n-cfg.memNs[0])
			}
			per := float64(shs.pss)/float64(n) + growth
			add(fmt.Sprintf("tmux new-session -d sh: sh + server growth/N, N=%d", n), n, per, growth,
				float64(shs.rss)/float64(n), float64(shs.private)/float64(n), procs)
		}
		r.note("tmux at N=%d counts the whole tmux server (it starts with the first session); at larger N only its growth since then", cfg.memNs[0])
	}

	// sshd: per-connection processes of `ssh host sleep`.
	if sshd != nil {
		sshd.stopMasters() // a ControlMaster would count as one more connection
		settle()
		lbase, _ := readMem(sshd.pid())
		var clients []*exec.Cmd
		defer func() {
			// The remote sleeps first: without a terminal, sshd's end
			// of a killed client's session does not end them (each
			// run left 100 behind, reparented to init).
			for _, p := range descendants(children(), sshd.pid()) {
				if comm(p) == "sleep" {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
			for _, c := range clients {
				c.Process.Kill()
				c.Wait()
			}
		}()
		for _, n := range cfg.sshMemNs {
			for len(clients) < n {
				c := sshd.command(context.Background(), []string{"-n"}, "sleep", "100000")
				c.Stdin, c.Stdout, c.Stderr = nil, nil, nil
				c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := c.Start(); err != nil {
					return err
				}
				clients = append(clients, c)
				if len(clients)%32 == 0 {
					time.Sleep(300 * time.Millisecond) // stay under MaxStartups-style pressure
				}
			}
			// Wait until every connection runs its sleep.
			deadline := time.Now().Add(60 * time.Second)
			var conns []int
			for time.Now().Before(deadline) {
				tree := children()
				conns = tree[sshd.pid()]
				sleeps := 0
				for _, p := range descendants(tree, sshd.pid()) {
					if comm(p) == "sleep" {
						sleeps++
					}
				}
				if sleeps >= n {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			settle()
			tree := children()
			isSleep := func(pid int) bool { return comm(pid) == "sleep" }
			conns = tree[sshd.pid()]
			procs, np := sumMem(conns, tree, isSleep)
			sl, _ := sumMem(conns, tree, func(pid int) bool { return !isSleep(pid) })
			l, _ := readMem(sshd.pid())
			growth := float64(l.pss-lbase.pss) / float64(n)
			per := float64(procs.pss)/float64(n) + growth
			add(fmt.Sprintf("sshd: per-connection sshd processes + listener growth/N, N=%d", n), n, per, growth,
				float64(procs.rss)/float64(n), float64(procs.private)/float64(n), np)
			r.find(fmt.Sprintf("sshd: per-connection sshd processes + listener growth/N, N=%d", n)).Extra["remote_sleep_pss_kib"] = float64(sl.pss) / float64(n)
			if len(conns) != n {
				r.problem("sshd memory: %d connections for %d clients", len(conns), n)
			}
		}
		r.note("sshd figures exclude the remote `sleep` itself (see remote_sleep_pss_kib); sshd is measured at N=%v only (1,000 would mean 1,000 full handshakes and 2,000 sshd processes)", cfg.sshMemNs)
	}
	return nil
}
