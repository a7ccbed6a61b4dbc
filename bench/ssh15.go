package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// figOverSSH is issue 15's performance goals: ssh:// targets (the user's
// OpenSSH, the stdio agent on the host) against plain ssh in the same run.
//
//   - `tether invoke ssh://H/S true` with Tether's master up vs `ssh H true`
//     through a ControlMaster (≤ 1.5×);
//   - first contact (probe + upload + start + first command) on a host with
//     no tether (≤ 2 s);
//   - second contact (binary there, no master) vs `ssh H true` (≤ 1.2×);
//   - fan-out of `true` over 100 sessions on 10 ssh targets vs the same over
//     direct agents (≤ 2×).
func (b *bench) figOverSSH(r *results, cfg config) error {
	const fig = "9. ssh:// targets (issue 15)"
	fmt.Fprintln(os.Stderr, "figure 9: ssh:// targets")
	sshd, err := b.startSSHD()
	if err != nil {
		return err
	}
	u, err := user.Lookup(sshUser)
	if err != nil {
		return err
	}
	// The client's ssh config: Host * → the private sshd (HostKeyAlias,
	// BatchMode), so ssh://b1 … ssh://b10 are ten aliases of one host.
	env := []string{"TETHER_SSH_CONFIG=" + sshd.sshConfig}
	tcmd := func(ctx context.Context, args ...string) *exec.Cmd {
		c := b.tetherCmd(ctx, args...)
		c.Env = append(c.Env, env...)
		return c
	}
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		c := tcmd(ctx, args...)
		out, err := c.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("tether %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	timed := func(args ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			return timeRun(tcmd(ctx, args...))
		}
	}
	hostBin := filepath.Join(u.HomeDir, ".local", "share", "tether")
	stopMasters := func(hosts ...string) {
		for _, h := range hosts {
			run("mux", "stop", "ssh://"+h)
		}
	}
	waitMaster := func(h string) {
		for i := 0; i < 100; i++ {
			if out, _ := run("mux", "status", h); strings.Contains(out, "tether master running") {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		r.problem("figure 9: no tether master for %s", h)
	}
	// Sessions of an earlier run (the bench user's state outlives it) go
	// first, and this run's at the end.
	cleanup := func() {
		run("remove", "--all", "ssh://b1")
		stopMasters("b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10")
	}
	cleanup()
	b.atExit(cleanup)

	// First contact: nothing on the host, no master. The client's own
	// SHA-256 is cached in its ~/.cache/tether after the first run, as it
	// would be for a user.
	firstN := 2
	if !cfg.quick {
		firstN = 5
	}
	// TETHER_BENCH_SSH15=fan runs the fan-out rows only (a quick loop while
	// profiling); TETHER_BENCH_HOLD=FILE writes FILE.sh (the fan-out's two
	// command lines) once the sessions are up and waits until FILE is gone.
	fanOnly := os.Getenv("TETHER_BENCH_SSH15") == "fan"
	if fanOnly {
		firstN = 0
		cfg.cmN, cfg.sshN = 0, 0
	}
	ds, errs := repeat(r, "first contact", firstN, func() (time.Duration, error) {
		stopMasters("b1")
		if err := os.RemoveAll(hostBin); err != nil {
			return 0, err
		}
		return timed("invoke", "ssh://b1", "true")()
	})
	first := r.add(newRow(fig, "first contact: tether invoke ssh://H true (probe + upload + start + command)", "ms", durs(ds, "ms")))
	first.Errors = errs
	if fi, err := os.Stat(b.bin); err == nil {
		first.Extra = map[string]any{"binary_MiB": float64(fi.Size()) / (1 << 20)}
	}

	// One session, then the steady state.
	// The ssh side's sessions get the run's shell as the direct side's do
	// (the agents' policy file does not reach the host user's stdio agent,
	// whose DefaultShell is the user's own): before, a builtin run compared
	// bash sessions over ssh with builtin ones on the agents.
	newArgs := func(args ...string) []string {
		a := []string{"new"}
		if b.shell != "" {
			a = append(a, "--shell", b.shell)
		}
		if b.shell == "bash" {
			a = append(a, "--no-profile") // as newSessions
		}
		return append(a, args...)
	}
	if _, err := run(newArgs("--name", "s", "ssh://b1")...); err != nil {
		return err
	}
	masterOpts, err := sshd.startMaster()
	if err != nil {
		return err
	}
	sshCM := func() (time.Duration, error) { return timeRun(sshd.command(context.Background(), masterOpts, "true")) }
	sshNew := func() (time.Duration, error) { return timeRun(sshd.command(context.Background(), nil, "true")) }
	repeat(r, "warm-up", 3, sshCM)
	ds, errs = repeat(r, "ssh true (ControlMaster)", cfg.cmN, sshCM)
	refCM := r.add(newRow(fig, "ssh H true (ControlMaster up), this figure", "ms", durs(ds, "ms")))
	refCM.Errors = errs
	// Without a tether master (TETHER_CONTROL_PERSIST=0): each command
	// runs ssh through its ControlMaster and a tether serve --stdio there.
	noTetherMaster := func(args ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := tcmd(ctx, args...)
			c.Env = append(c.Env, "TETHER_CONTROL_PERSIST=0")
			return timeRun(c)
		}
	}
	stopMasters("b1")
	repeat(r, "warm-up", 3, noTetherMaster("invoke", "ssh://b1/s", "true"))
	ds, errs = repeat(r, "tether invoke ssh://H/S true (ssh's ControlMaster only)", cfg.cmN, noTetherMaster("invoke", "ssh://b1/s", "true"))
	x0 := r.add(newRow(fig, "tether invoke ssh://H/S true, TETHER_CONTROL_PERSIST=0 (ssh's ControlMaster only: a remote tether per command)", "ms", durs(ds, "ms")))
	x0.Errors = errs
	r.ratio(x0, refCM.Name)
	// The default: the first command leaves a tether master for the host.
	timed("invoke", "ssh://b1/s", "true")()
	waitMaster("ssh://b1")
	repeat(r, "warm-up", 3, timed("invoke", "ssh://b1/s", "true"))
	ds, errs = repeat(r, "tether invoke ssh://H/S true (master up)", cfg.cmN, timed("invoke", "ssh://b1/s", "true"))
	x := r.add(newRow(fig, "tether invoke ssh://H/S true (Tether's ssh master up, the default)", "ms", durs(ds, "ms")))
	x.Errors = errs
	r.ratio(x, refCM.Name)
	goal(r, "`tether invoke ssh://H/S true`, master up", "≤ 1.5× `ssh H true` with a ControlMaster", x, refCM, 1.5)

	// Where the difference goes: the remote binary's start alone, over
	// the same ControlMaster.
	if bins, _ := filepath.Glob(filepath.Join(hostBin, "bin", "*", "tether")); len(bins) == 1 {
		ds, errs = repeat(r, "ssh tether version", cfg.cmN, func() (time.Duration, error) {
			return timeRun(sshd.command(context.Background(), masterOpts, bins[0], "version"))
		})
		y := r.add(newRow(fig, "  ssh H ~/.local/share/tether/bin/…/tether version (ControlMaster up): the remote binary's start", "ms", durs(ds, "ms")))
		y.Errors = errs
		r.ratio(y, refCM.Name)
	}
	// With TETHER_CONTROL_PERSIST a tether master holds one stdio agent's
	// connection: a command starts neither ssh nor a remote process.
	persist := func(args ...string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := tcmd(ctx, args...)
			c.Env = append(c.Env, "TETHER_CONTROL_PERSIST=5m")
			return timeRun(c)
		}
	}
	persist("invoke", "ssh://b1/s", "true")()
	waitMaster("ssh://b1")
	repeat(r, "warm-up", 3, persist("invoke", "ssh://b1/s", "true"))
	ds, errs = repeat(r, "tether invoke ssh://H/S true (TETHER_CONTROL_PERSIST)", cfg.cmN, persist("invoke", "ssh://b1/s", "true"))
	xp := r.add(newRow(fig, "tether invoke ssh://H/S true (TETHER_CONTROL_PERSIST master up)", "ms", durs(ds, "ms")))
	xp.Errors = errs
	r.ratio(xp, refCM.Name)
	goal(r, "`tether invoke ssh://H/S true`, TETHER_CONTROL_PERSIST master up", "≤ 1.5× `ssh H true` with a ControlMaster", xp, refCM, 1.5)

	ds, errs = repeat(r, "ssh true (new connection)", cfg.sshN, sshNew)
	refNew := r.add(newRow(fig, "ssh H true (new connection), this figure", "ms", durs(ds, "ms")))
	refNew.Errors = errs
	ds, errs = repeat(r, "second contact", cfg.sshN, func() (time.Duration, error) {
		// The last command started a tether master in the background: up
		// only after a stop, it would serve this command.
		for i := 0; i < 100; i++ {
			if out, _ := run("mux", "status", "ssh://b1"); strings.Contains(out, "tether master running") {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		stopMasters("b1")
		// ssh -O exit returns before ssh's master has let go of its
		// socket: a command started at once could still go through it
		// (a 14 ms "second contact").
		for i := 0; i < 200; i++ {
			if out, _ := run("mux", "status", "ssh://b1"); !strings.Contains(out, "master running") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return timed("invoke", "ssh://b1/s", "true")()
	})
	second := r.add(newRow(fig, "second contact: tether invoke ssh://H/S true (binary there, no master)", "ms", durs(ds, "ms")))
	second.Errors = errs
	r.ratio(second, refNew.Name)
	goal(r, "second contact over ssh (binary present, no master)", "≤ 1.2× `ssh H true`", second, refNew, 1.2)
	if first.N > 0 {
		r.Targets = append(r.Targets, target{Name: "first contact over ssh (probe + upload + start + first command)", Goal: "≤ 2 s",
			Measured: fmt.Sprintf("%.0f ms median", first.Median), Pass: first.Median <= 2000})
	}

	// Fan-out: 100 sessions on 10 ssh aliases, against 100 sessions on 10
	// direct agents, masters up on both sides (Tether's ssh masters; the
	// direct side's connections are made by the fan-out itself).
	const hosts, per = 10, 10
	var sshTargets, sshHosts []string
	for h := 1; h <= hosts; h++ {
		sshHosts = append(sshHosts, "ssh://b"+strconv.Itoa(h))
	}
	// 100 sessions of one user: above the default MaxShellsPerUser (a
	// user-mode agent's settings are the user's, so the user may raise it).
	if _, err := run("config", "set", "ssh://b1", "MaxShellsPerUser", "200"); err != nil {
		return err
	}
	// One user on one sshd: names are per host user, so each new gets its
	// own (generated) name on each alias.
	for i := 1; i <= per; i++ {
		out, err := run(newArgs("--throttle", "10", strings.Join(sshHosts, ","))...)
		if err != nil {
			return err
		}
		for _, l := range strings.Fields(out) {
			if strings.HasPrefix(l, "ssh://") && strings.Contains(strings.TrimPrefix(l, "ssh://"), "/") {
				sshTargets = append(sshTargets, l)
			}
		}
	}
	if len(sshTargets) != hosts*per {
		return fmt.Errorf("made %d ssh sessions, want %d", len(sshTargets), hosts*per)
	}
	var direct []string
	var agents []*agentProc
	for h := 0; h < hosts; h++ {
		a, err := b.startAgent("ssh15-"+strconv.Itoa(h), per+5)
		if err != nil {
			return err
		}
		agents = append(agents, a)
		s, err := b.newSessions(a, per)
		if err != nil {
			return err
		}
		direct = append(direct, s...)
	}
	sshList, directList := strings.Join(sshTargets, ","), strings.Join(direct, ",")
	if hold := os.Getenv("TETHER_BENCH_HOLD"); hold != "" {
		q := func(ss ...string) string {
			var o []string
			for _, s := range ss {
				o = append(o, "'"+s+"'")
			}
			return strings.Join(o, " ")
		}
		sh := fmt.Sprintf("export HOME=%s USER=%s SSH_AUTH_SOCK= TETHER_SSH_CONFIG=%s\nT=%s\nSSHLIST=%s\nDIRECTLIST=%s\n",
			q(b.home), q(b.user), q(sshd.sshConfig), q(b.bin+" -i "+b.key), q(sshList), q(directList))
		os.WriteFile(hold, nil, 0o644)
		os.WriteFile(hold+".sh", []byte(sh), 0o644)
		fmt.Fprintf(os.Stderr, "figure 9: holding; source %s.sh, rm %s to go on\n", hold, hold)
		for {
			if _, err := os.Stat(hold); err != nil {
				break
			}
			time.Sleep(time.Second)
		}
	}
	reps := max(cfg.fanReps, 3)
	timed("invoke", sshList, "true")() // masters up, sessions warm
	for _, h := range sshHosts {
		waitMaster(h)
	}
	// The direct side without the ssh config (its Host * would give the
	// agents' targets the ssh user, as ssh_config does).
	timedDirect := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return timeRun(b.tetherCmd(ctx, "invoke", directList, "true"))
	}
	timedDirect()
	// CPU per fan-out of each process the runs cross (both sides in
	// turns, so that both see the same load).
	hostUID, _ := strconv.Atoi(u.Uid)
	cpuSSH := &cpuRuns{set: b.sshFanProcs(sshd.pid(), hostUID)}
	cpuDirect := &cpuRuns{set: directFanProcs(agents)}
	directCmd := func() *exec.Cmd { return b.tetherCmd(context.Background(), "invoke", directList, "true") }
	sshCmd := func() *exec.Cmd { return tcmd(context.Background(), "invoke", sshList, "true") }
	var dsD, dsS []time.Duration
	var errsD, errsS int
	// At least 10 turns: /proc counts CPU in 10 ms ticks.
	for i := 0; i < max(reps, 10); i++ {
		d, e := repeat(r, "fan-out direct", 1, cpuDirect.run(directCmd))
		dsD, errsD = append(dsD, d...), errsD+e
		d, e = repeat(r, "fan-out ssh", 1, cpuSSH.run(sshCmd))
		dsS, errsS = append(dsS, d...), errsS+e
	}
	refFan := r.add(newRow(fig, "fan-out `true` over 100 sessions on 10 direct agents", "ms", durs(dsD, "ms")))
	refFan.Errors = errsD
	fan := r.add(newRow(fig, "fan-out `true` over 100 sessions on 10 ssh:// targets (Tether's ssh masters up, the default)", "ms", durs(dsS, "ms")))
	fan.Errors = errsS
	r.ratio(fan, refFan.Name)
	goal(r, "fan-out over 100 sessions on 10 ssh targets, ssh masters", "≤ 2× the same over direct agents", fan, refFan, 2)
	cd := cpuDirect.rows(r, fig, "direct")
	cs := cpuSSH.rows(r, fig, "ssh://")
	if cd != nil && cs != nil {
		r.ratio(cs, cd.Name)
	}
	ds, errs = repeat(r, "fan-out ssh, no tether master", reps, noTetherMaster("invoke", sshList, "true"))
	fan0 := r.add(newRow(fig, "fan-out `true` over 100 sessions on 10 ssh:// targets, TETHER_CONTROL_PERSIST=0 (ssh's ControlMasters only)", "ms", durs(ds, "ms")))
	fan0.Errors = errs
	r.ratio(fan0, refFan.Name)
	persist("invoke", sshList, "true")() // starts a tether master per alias
	for _, h := range sshHosts {
		waitMaster(h)
	}
	persist("invoke", sshList, "true")()
	ds, errs = repeat(r, "fan-out ssh persist", reps, persist("invoke", sshList, "true"))
	fanP := r.add(newRow(fig, "fan-out `true` over 100 sessions on 10 ssh:// targets (TETHER_CONTROL_PERSIST masters up)", "ms", durs(ds, "ms")))
	fanP.Errors = errs
	r.ratio(fanP, refFan.Name)
	goal(r, "fan-out over 100 sessions on 10 ssh targets, TETHER_CONTROL_PERSIST", "≤ 2× the same over direct agents", fanP, refFan, 2)

	sshd.stopMasters()
	r.note("figure 9: the ssh side logs in as %s on a private sshd; ssh://b1…b10 are aliases (Host *) of that one sshd, so its 100 sessions are one user's on one host (a user-mode agent: the rlimit monitor, no cgroups)", sshUser)
	return nil
}

// goal records x ≤ limit × ref as a target.
func goal(r *results, name, text string, x, ref *row, limit float64) {
	if x == nil || ref == nil || x.N == 0 || ref.N == 0 || ref.Median == 0 {
		r.Targets = append(r.Targets, target{Name: name, Goal: text, Skipped: true})
		return
	}
	f := x.Median / ref.Median
	r.Targets = append(r.Targets, target{Name: name, Goal: text, Pass: f <= limit,
		Measured: fmt.Sprintf("%.1f ms vs %.1f ms = %.2f×", x.Median, ref.Median, f)})
}

// procSet is the long-lived processes a fan-out crosses, by kind: their
// CPU time (/proc/PID/stat, exited threads included) before and after a
// run says where the work went, and swings less than wall time on a
// shared machine. Nothing of the fan-out starts a process once the
// masters are up, so the set is taken once, before the timed runs.
type procSet struct {
	kinds []string
	pids  map[string][]int
}

func (p *procSet) add(kind string, pid int) {
	if p.pids == nil {
		p.pids = map[string][]int{}
	}
	if _, ok := p.pids[kind]; !ok {
		p.kinds = append(p.kinds, kind)
	}
	p.pids[kind] = append(p.pids[kind], pid)
}

// cpu is each process's CPU time now; a process that has gone is missing.
func (p *procSet) cpu() map[int]time.Duration {
	m := map[int]time.Duration{}
	for _, pids := range p.pids {
		for _, pid := range pids {
			if d, ok := procCPU(pid); ok {
				m[pid] = d
			}
		}
	}
	return m
}

// delta is each kind's CPU between two cpu() readings, from the processes
// in both (one that ended meanwhile, an idle session host of an earlier
// run, took its CPU with it).
func (p *procSet) delta(before, after map[int]time.Duration) map[string]time.Duration {
	m := map[string]time.Duration{}
	for k, pids := range p.pids {
		for _, pid := range pids {
			b, ok1 := before[pid]
			a, ok2 := after[pid]
			if ok1 && ok2 && a >= b {
				m[k] += a - b
			}
		}
	}
	return m
}

type procInfo struct {
	pid, ppid, uid int
	cmdline        string
}

func listProcs() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if err != nil {
			continue
		}
		uid := -1
		if s, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid = int(s.Uid)
		}
		out = append(out, procInfo{pid, ppid, uid, strings.ReplaceAll(strings.TrimRight(string(cl), "\x00"), "\x00", " ")})
	}
	return out
}

// below reports whether pid descends from one of roots.
func below(byPid map[int]procInfo, pid int, roots map[int]bool) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if roots[pid] {
			return true
		}
		pid = byPid[pid].ppid
	}
	return false
}

// sshFanProcs: this run's tether masters and ssh's ControlMasters (the
// client side), this sshd's processes, and the host user's stdio agents,
// session hosts and shells (the bench user's; session hosts are their own
// process sessions, reparented to init).
func (b *bench) sshFanProcs(sshdPid, hostUID int) *procSet {
	ps := listProcs()
	byPid := map[int]procInfo{}
	for _, p := range ps {
		byPid[p.pid] = p
	}
	sshd := map[int]bool{sshdPid: true}
	s := &procSet{}
	for _, p := range ps {
		switch {
		case strings.Contains(p.cmdline, " mux-master ") && strings.Contains(p.cmdline, b.key):
			s.add("tether masters", p.pid)
		case strings.HasPrefix(p.cmdline, "ssh") && strings.Contains(p.cmdline, b.home):
			s.add("ssh (ControlMasters)", p.pid)
		case below(byPid, p.pid, sshd):
			if strings.Contains(p.cmdline, "serve --stdio") {
				s.add("stdio agents", p.pid)
			} else if strings.HasPrefix(p.cmdline, "sshd") {
				s.add("sshd", p.pid)
			} else {
				s.add("session hosts and shells", p.pid) // started by a stdio agent, not yet reparented
			}
		case p.uid == hostUID:
			s.add("session hosts and shells", p.pid)
		}
	}
	return s
}

// directFanProcs: the agents and what they started (session hosts, shells).
func directFanProcs(agents []*agentProc) *procSet {
	ps := listProcs()
	byPid := map[int]procInfo{}
	roots := map[int]bool{}
	s := &procSet{}
	for _, p := range ps {
		byPid[p.pid] = p
	}
	for _, a := range agents {
		roots[a.cmd.Process.Pid] = true
		s.add("agents", a.cmd.Process.Pid)
	}
	for _, p := range ps {
		if !roots[p.pid] && below(byPid, p.pid, roots) {
			s.add("session hosts and shells", p.pid)
		}
	}
	return s
}

// cpuRuns wraps a timed tether run: it adds the CLI's CPU (its rusage) and
// each kind's to the totals.
type cpuRuns struct {
	set   *procSet
	runs  int
	cli   time.Duration
	kinds map[string]time.Duration
}

func (c *cpuRuns) run(cmd func() *exec.Cmd) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		x := cmd()
		before := c.set.cpu()
		d, err := timeRun(x)
		after := c.set.cpu()
		if c.kinds == nil {
			c.kinds = map[string]time.Duration{}
		}
		for k, v := range c.set.delta(before, after) {
			c.kinds[k] += v
		}
		if x.ProcessState != nil {
			c.cli += x.ProcessState.UserTime() + x.ProcessState.SystemTime()
		}
		c.runs++
		return d, err
	}
}

// rows adds "CPU per fan-out" rows (ms per run) and returns the total's.
func (c *cpuRuns) rows(r *results, fig, side string) *row {
	if c.runs == 0 {
		return nil
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(c.runs) }
	total := c.cli
	r.add(newRow(fig, fmt.Sprintf("  CPU per fan-out, %s: the CLI", side), "ms", []float64{per(c.cli)}))
	for _, k := range c.set.kinds {
		total += c.kinds[k]
		r.add(newRow(fig, fmt.Sprintf("  CPU per fan-out, %s: %s", side, k), "ms", []float64{per(c.kinds[k])}))
	}
	return r.add(newRow(fig, fmt.Sprintf("  CPU per fan-out, %s: all these processes", side), "ms", []float64{per(total)}))
}

// procCPU is one process's CPU time (utime + stime), if it is there.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) <= 12 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * time.Second / 100, true // USER_HZ
}
