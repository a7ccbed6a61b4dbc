// Command bench compares Tether with OpenSSH and with the loopback floor on
// this machine: per-command latency, output throughput, fan-out, reconnect,
// memory per idle session and session creation. It starts everything it
// compares against itself (tether agents and a private sshd on 127.0.0.1),
// prints a Markdown table and writes bench/results.json and bench/fanout.svg.
//
//	make bench                         # the full run (< 15 min on 2 cores)
//	go run ./bench -tether bin/tether -quick      # smoke run (< 2 min)
//	go run ./bench -tether bin/tether -only fanout
//
// It needs root for the private sshd (it creates the login "tetherbench",
// see sshd.go) and installs openssh-server with apt-get when missing.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	tconfig "github.com/tether-sh/tether/internal/config"
)

var figureNames = []string{"latency", "throughput", "fanout", "reconnect", "memory", "idleuser", "create", "stockssh", "cp", "overssh", "perf18", "shellpair", "chancap"}

func main() {
	if mode := os.Getenv(echoEnv); mode != "" {
		echoMain(mode)
		return
	}
	bin := flag.String("tether", "bin/tether", "tether binary to benchmark (built from ./cmd/tether when missing)")
	quick := flag.Bool("quick", false, "small N and few repetitions (< 2 minutes): a smoke run of the harness")
	only := flag.String("only", "", "run one figure (or a comma-separated list): "+strings.Join(figureNames, ", "))
	out := flag.String("out", "", "results file (default bench/results.json; bench/results-quick.json with -quick)")
	svg := flag.String("svg", "", "fan-out plot (default bench/fanout.svg; bench/fanout-quick.svg with -quick)")
	noSSH := flag.Bool("no-ssh", false, "skip OpenSSH (no private sshd)")
	profile := flag.String("profile", "", "instead of the figures, profile tether's slow paths into this directory (see profile.go)")
	shell := flag.String("shell", "", "the sessions' shell, bash or builtin (each agent's DefaultShell; default: the build's default)")
	flag.Parse()
	if *shell != "" && *shell != "bash" && *shell != "builtin" {
		fmt.Fprintf(os.Stderr, "bench: bad -shell %q: use bash or builtin\n", *shell)
		os.Exit(2)
	}

	cfg := fullConfig()
	if *quick {
		cfg = quickConfig()
	}
	if *out == "" {
		*out = "bench/results.json"
		if *quick {
			*out = "bench/results-quick.json"
		}
	}
	cfg.svg = *svg
	if cfg.svg == "" {
		cfg.svg = filepath.Join(filepath.Dir(*out), "fanout.svg")
		if *quick {
			cfg.svg = filepath.Join(filepath.Dir(*out), "fanout-quick.svg")
		}
	}
	want := map[string]bool{}
	if *only != "" {
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			ok := false
			for _, f := range figureNames {
				ok = ok || f == n
			}
			if !ok {
				fmt.Fprintf(os.Stderr, "bench: unknown figure %q; use one of %s\n", n, strings.Join(figureNames, ", "))
				os.Exit(2)
			}
			want[n] = true
		}
	} else {
		for _, f := range figureNames {
			want[f] = true
		}
	}

	path, err := ensureBinary(*bin)
	if err != nil {
		fatal(err)
	}
	b, err := newBench(path)
	if b != nil {
		b.shell = *shell
		if b.shell == "" && tconfig.HostBash() != "" {
			// The agents' default; the figures open bash sessions with
			// --no-profile only when they know the shell is bash.
			b.shell = tconfig.ShellBash
		}
	}
	if err != nil {
		fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
		b.close()
		os.Exit(130)
	}()
	defer b.close()

	if *profile != "" {
		if err := b.runProfiles(*profile, cfg); err != nil {
			b.close()
			fatal(err)
		}
		return
	}

	r := &results{Started: time.Now(), Quick: *quick, Command: strings.Join(os.Args, " ")}
	var sshd *sshdProc
	if !*noSSH && (want["latency"] || want["throughput"] || want["fanout"] || want["memory"] || want["create"] || want["perf18"]) {
		if sshd, err = b.startSSHD(); err != nil {
			r.problem("OpenSSH comparison skipped: %v", err)
			sshd = nil
		}
	}
	r.Machine = machine(sshd)
	fmt.Fprintf(os.Stderr, "bench: %v\n", r.Machine)
	r.note("ssh logs in as %q (/bin/bash, empty home): root's ~/.bashrc here runs pyenv init and Debian's bash reads ~/.bashrc for `ssh host cmd`, which would add ~480 ms to every ssh figure", sshUser)
	switch b.shell {
	case "builtin":
		r.note("tether agents and sessions run as %s; sessions are the builtin shell (mvdan/sh inside the session host), which reads no start-up files", b.user)
	default:
		r.note("tether agents and sessions run as %s; sessions are the host's bash, opened with --no-profile (an empty profile); a temporary session (invoke H) reads %s's login profile, which here runs pyenv init (~0.5 s)", b.user, b.user)
	}

	type figure struct {
		name string
		run  func() error
	}
	figs := []figure{
		{"latency", func() error { return b.figLatency(r, cfg, sshd) }},
		{"throughput", func() error { return b.figThroughput(r, cfg, sshd) }},
		{"fanout", func() error { return b.figFanout(r, cfg, sshd) }},
		{"reconnect", func() error { return b.figReconnect(r, cfg) }},
		{"memory", func() error { return b.figMemory(r, cfg, sshd) }},
		{"idleuser", func() error { return b.figIdleUser(r, cfg) }},
		{"create", func() error { return b.figCreate(r, cfg, sshd) }},
		{"stockssh", func() error { return b.figStockSSH(r, cfg, sshd) }},
		{"cp", func() error { return b.figCp(r, cfg, sshd) }},
		{"overssh", func() error { return b.figOverSSH(r, cfg) }},
		{"shellpair", func() error { return b.figShellPair(r, cfg) }},
		{"perf18", func() error { return b.figPerf18(r, cfg, sshd) }},
		{"chancap", func() error { return b.figChanCap(r, cfg) }},
	}
	for _, f := range figs {
		if !want[f.name] {
			continue
		}
		start := time.Now()
		la0 := loadavg()
		if err := f.run(); err != nil {
			r.problem("figure %s failed: %v", f.name, err)
		}
		fmt.Fprintf(os.Stderr, "  (%s took %.1fs)\n", f.name, time.Since(start).Seconds())
		r.note("figure %s: %.0f s; load average before %s, after %s (other work on the machine skews figures)", f.name, time.Since(start).Seconds(), la0, loadavg())
		for _, a := range b.agents {
			if a.alive() {
				a.stop()
			}
		}
		b.agents = nil
	}
	sort.SliceStable(r.Rows, func(i, j int) bool { return r.Rows[i].Figure[:2] < r.Rows[j].Figure[:2] })
	judge(r, cfg, b.shell)
	r.Seconds = time.Since(r.Started).Seconds()

	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fatal(err)
	}
	fmt.Printf("# tether bench (%s)\n\nmachine: %d cores, %s, kernel %s, %s, %s\n", map[bool]string{true: "quick", false: "full"}[*quick],
		r.Machine["cores"], r.Machine["cpu"], r.Machine["kernel"], r.Machine["go"], r.Machine["openssh"])
	fmt.Print(r.table())
	if len(r.Notes) > 0 {
		fmt.Println("\nNotes:")
		for _, n := range r.Notes {
			fmt.Println("- " + n)
		}
	}
	if len(r.Problems) > 0 {
		fmt.Println("\nProblems seen:")
		for _, p := range r.Problems {
			fmt.Println("- " + p)
		}
	}
	fmt.Printf("\n%.0f s; wrote %s and %s\n", r.Seconds, *out, cfg.svg)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// ensureBinary returns an absolute path to the tether binary, building it
// when missing.
func ensureBinary(bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err == nil {
		return abs, nil
	}
	fmt.Fprintf(os.Stderr, "bench: %s missing; go build -o %s ./cmd/tether\n", bin, abs)
	os.MkdirAll(filepath.Dir(abs), 0o755)
	cmd := exec.Command("go", "build", "-o", abs, "./cmd/tether")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return abs, cmd.Run()
}

func machine(sshd *sshdProc) map[string]any {
	m := map[string]any{"cores": runtime.NumCPU(), "go": runtime.Version(), "goarch": runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m["kernel"] = utsString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["meminfo"] = strings.SplitN(string(b), "\n", 2)[0]
	}
	if sshd != nil {
		m["openssh"] = sshd.version
	} else if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m["openssh"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m["tether_commit"] = strings.TrimSpace(string(out))
	}
	return m
}

func utsString(a []int8) string {
	var b []byte
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// judge compares the measured figures with the targets of the issues:
// #18's where it set one, earlier rounds' elsewhere (each goal says whose).
func judge(r *results, cfg config, shell string) {
	get := func(name string) *row {
		x := r.find(name)
		if x == nil || x.N == 0 || math.IsNaN(x.Median) {
			return nil
		}
		return x
	}
	add := func(name, goal string, ok bool, measured string, have bool) {
		r.Targets = append(r.Targets, target{Name: name, Goal: goal, Measured: measured, Pass: have && ok, Skipped: !have})
	}
	rtt := get("loopback TCP 64 B round trip (floor)")
	run := get("tether Go client, long-lived conn: Run `true` (builtin)") // the row's name predates bash sessions
	keptName := fmt.Sprintf("`true` in an existing %s session, long-lived client", shellName(shell))
	if rtt != nil && run != nil {
		ratio := run.Median / rtt.Median
		add(keptName, "≤ 10× loopback RTT (#18)", ratio <= 10,
			fmt.Sprintf("%.0f µs vs RTT %.0f µs = %.1f×", run.Median, rtt.Median, ratio), true)
	} else {
		add(keptName, "≤ 10× loopback RTT (#18)", false, "", false)
	}
	cm := get("ssh host true (ControlMaster up)")
	for _, c := range []struct {
		row, name, goal string
		f               float64
	}{
		{"tether invoke H/S true (fresh CLI, TETHER_CONTROL_PERSIST master up)", "`tether invoke H/S true`, fresh CLI, both with a master up", "≥ 2× faster than ssh ControlMaster (#18)", 2},
		{"tether invoke H/S true (fresh CLI process)", "`tether invoke H/S true`, fresh CLI, tether without a master", "≥ 4× faster than ssh ControlMaster (round 1)", 4},
	} {
		cli := get(c.row)
		if cli != nil && cm != nil {
			f := cm.Median / cli.Median
			add(c.name, c.goal, f >= c.f,
				fmt.Sprintf("%.1f ms vs %.1f ms: %.2f× faster", cli.Median, cm.Median, f), true)
		} else {
			add(c.name, c.goal, false, "", false)
		}
	}
	maxN := 0
	for _, n := range cfg.fanNs {
		maxN = max(maxN, n)
	}
	var best *row
	for _, th := range cfg.throttles {
		if x := get(fmt.Sprintf("tether invoke --throttle %d, N=%d", th, maxN)); x != nil && x.Errors == 0 && (best == nil || x.Median < best.Median) {
			best = x
		}
	}
	xa := get(fmt.Sprintf("xargs -P %d ssh, N=%d", cfg.xargsPar, maxN))
	if best != nil {
		add(fmt.Sprintf("%d existing sessions over %d agents, `true`", maxN, cfg.fanAgents), "≤ 1 s", best.Median <= 1,
			fmt.Sprintf("%.2f s (%s)", best.Median, best.Name), true)
		if xa != nil {
			f := xa.Median / best.Median
			add(fmt.Sprintf("same vs xargs -P %d ssh", cfg.xargsPar), "≥ 20× faster", f >= 20, fmt.Sprintf("%.2f s vs %.1f s: %.1f×", best.Median, xa.Median, f), true)
		} else {
			add(fmt.Sprintf("same vs xargs -P %d ssh", cfg.xargsPar), "≥ 20× faster", false, "", false)
		}
	} else {
		ran := r.find(fmt.Sprintf("tether invoke --throttle %d, N=%d", cfg.throttles[0], maxN)) != nil
		add(fmt.Sprintf("%d existing sessions over %d agents, `true`", maxN, cfg.fanAgents), "≤ 1 s", false, "no error-free run (see problems)", ran)
		add(fmt.Sprintf("same vs xargs -P %d ssh", cfg.xargsPar), "≥ 20× faster", false, "no error-free run (see problems)", ran)
	}
	plain, folded := get(fmt.Sprintf("tether invoke hostname, N=%d", maxN)), get(fmt.Sprintf("tether invoke --fold hostname, N=%d", maxN))
	if plain != nil && folded != nil && plain.Errors == 0 && folded.Errors == 0 {
		f := folded.Median / plain.Median
		add(fmt.Sprintf("`invoke --fold hostname`, N=%d", maxN), "≤ 1.1× without --fold", f <= 1.1,
			fmt.Sprintf("%.3f s vs %.3f s: %.2f×", folded.Median, plain.Median, f), true)
	} else {
		add(fmt.Sprintf("`invoke --fold hostname`, N=%d", maxN), "≤ 1.1× without --fold", false, "no error-free run (see problems)", plain != nil || folded != nil)
	}
	var tput, gcm *row
	for _, x := range r.Rows {
		if strings.HasPrefix(x.Name, "tether invoke H/S head") {
			tput = get(x.Name)
		}
		if strings.HasPrefix(x.Name, "ssh host head") && strings.Contains(x.Name, "aes128-gcm") {
			gcm = get(x.Name)
		}
	}
	if tput != nil && gcm != nil {
		f := tput.Median / gcm.Median
		add("output (tether invoke vs ssh -c aes128-gcm)", "≥ 0.8× (#18; stretch 1.0×)", f >= 0.8, fmt.Sprintf("%.0f vs %.0f MiB/s = %.2f×", tput.Median, gcm.Median, f), true)
	} else {
		add("output (tether invoke vs ssh -c aes128-gcm)", "≥ 0.8× (#18; stretch 1.0×)", false, "", false)
	}
	judgeRatio(get, add, "input (stdin → cat, tether invoke vs ssh -c aes128-gcm)", "≥ 0.8× (#18)", 0.8, true,
		"tether invoke H/S 'cat >/dev/null' < 1024 MiB of stdin (fresh CLI)", "ssh -c aes128-gcm host 'cat >/dev/null' < 1024 MiB of stdin", "MiB/s")
	judgeRatio(get, add, "Go client (long-lived, this process's settings) vs the CLI, output", "≥ 1.0× (#18)", 1.0, true,
		"  Go client, long-lived conn, this process's settings (GOGC 100, all Ps)", "tether invoke H/S head -c 1024 MiB >/dev/null (fresh CLI, in turns with the Go client)", "MiB/s")
	judgeRatio(get, add, "imported proxy command vs a fresh `invoke H/S true`", "≤ 1.5× (#18)", 1.5, false,
		"imported proxy command (module command `true`, fresh CLI)", "tether invoke H/S true (fresh CLI, in turns with the proxy)", "ms")
	if x := get("connection reset → next output byte at the client (Go client, RST by proxy)"); x != nil {
		add("resume after reset", "≤ 100 ms", x.Median <= 100 && x.Errors == 0, fmt.Sprintf("median %.1f ms, p99 %.1f ms, max %.1f ms", x.Median, x.P99, x.Max), true)
	} else {
		add("resume after reset", "≤ 100 ms", false, "", false)
	}
	var idleUser *row
	for _, x := range r.Rows {
		if strings.HasPrefix(x.Name, "tether, agent as a normal user") && x.N > 0 {
			idleUser = x
		}
	}
	if idleUser != nil {
		// 0.0 as the table prints it: below 0.05 % of a core for all of them.
		add("idle CPU, agent as a normal user", "0.0 % for 100 idle sessions", idleUser.Median < 0.05,
			fmt.Sprintf("%.2f %% for %v sessions", idleUser.Median, idleUser.Extra["sessions"]), true)
	} else {
		add("idle CPU, agent as a normal user", "0.0 % for 100 idle sessions", false, "", false)
	}
	var memRow *row
	for _, x := range r.Rows {
		if strings.HasPrefix(x.Name, "tether: session host") && x.N > 0 {
			if memRow == nil || x.Extra["sessions"].(int) >= memRow.Extra["sessions"].(int) {
				memRow = x // the largest N
			}
		}
	}
	if memRow != nil {
		add("idle session memory", "≤ 2 MiB PSS", memRow.Median <= 2048, fmt.Sprintf("%.0f KiB at N=%d", memRow.Median, memRow.Extra["sessions"]), true)
	} else {
		add("idle session memory", "≤ 2 MiB PSS", false, "", false)
	}
}

// judgeRatio adds (through judge's add) the target "row ÷ ref at least
// (atLeast) or at most want", skipped when either row is missing.
func judgeRatio(get func(string) *row, add func(name, goal string, ok bool, measured string, have bool), name, goal string, want float64, atLeast bool, rowName, refName, unit string) {
	x, ref := get(rowName), get(refName)
	if x == nil || ref == nil {
		add(name, goal, false, "", false)
		return
	}
	f := x.Median / ref.Median
	ok := f >= want
	if !atLeast {
		ok = f <= want
	}
	add(name, goal, ok, fmt.Sprintf("%.3g vs %.3g %s = %.2f×", x.Median, ref.Median, unit, f), true)
}

// shellName is how the judge names the sessions' shell.
func shellName(shell string) string {
	if shell == "" {
		return "default-shell"
	}
	return shell
}
