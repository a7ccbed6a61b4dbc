package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/wire"
)

// config says how hard each figure works.
type config struct {
	quick      bool
	rttN       int // loopback ping-pongs
	goN        int // long-lived client commands
	cliN       int // fresh tether CLI processes
	sshN       int // new ssh connections
	cmN        int // ControlMaster commands
	createN    int // tether new / ssh true for figure 6
	tputBytes  int64
	tputReps   int
	fanNs      []int
	fanReps    int
	reconReps  int
	memNs      []int
	sshMemNs   []int
	throttles  []int
	xargsPar   int
	fanAgents  int
	profileDir string
	svg        string
}

func (c config) svgPath() string { return c.svg }

func fullConfig() config {
	return config{
		rttN: 20000, goN: 2000, cliN: 100, sshN: 30, cmN: 100, createN: 50,
		tputBytes: 1 << 30, tputReps: 3,
		fanNs: []int{10, 100, 1000}, fanReps: 3, throttles: []int{32, 256}, xargsPar: 32, fanAgents: 4,
		reconReps: 20, memNs: []int{1, 100, 1000}, sshMemNs: []int{1, 100},
	}
}

func quickConfig() config {
	return config{
		quick: true, rttN: 2000, goN: 200, cliN: 10, sshN: 4, cmN: 10, createN: 5,
		tputBytes: 128 << 20, tputReps: 1,
		fanNs: []int{10, 40}, fanReps: 1, throttles: []int{32, 256}, xargsPar: 32, fanAgents: 4,
		reconReps: 4, memNs: []int{1, 20}, sshMemNs: []int{1, 5},
	}
}

var devNull = func() *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		panic(err)
	}
	return f
}()

// timeRun runs cmd with stdin and stdout on /dev/null and times it.
func timeRun(cmd *exec.Cmd) (time.Duration, error) {
	var errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%v: %v: %s", cmd.Args, err, strings.TrimSpace(errb.String()))
	}
	return d, nil
}

// repeat runs f n times and collects durations; errors are counted and the
// first few reported as problems.
func repeat(r *results, what string, n int, f func() (time.Duration, error)) ([]time.Duration, int) {
	var ds []time.Duration
	errs := 0
	for i := 0; i < n; i++ {
		d, err := f()
		if err != nil {
			errs++
			if errs <= 3 {
				r.problem("%s: %v", what, err)
			}
			continue
		}
		ds = append(ds, d)
	}
	return ds, errs
}

// inTurns is repeat for two measurements taken alternately (a, b, a, b,
// …), so that the machine's drift over the figure falls on both alike and
// their ratio is the one a user would see at one moment.
func inTurns(r *results, what [2]string, n int, f [2]func() (time.Duration, error)) ([2][]time.Duration, [2]int) {
	var ds [2][]time.Duration
	var errs [2]int
	for i := 0; i < n; i++ {
		for k := range f {
			d, err := f[k]()
			if err != nil {
				if errs[k]++; errs[k] <= 3 {
					r.problem("%s: %v", what[k], err)
				}
				continue
			}
			ds[k] = append(ds[k], d)
		}
	}
	return ds, errs
}

// loopbackRTT measures 64-byte TCP ping-pongs over loopback.
func loopbackRTT(n int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return pingPong(c, n)
}

// ---- Figure 1: per-command latency ----

func (b *bench) figLatency(r *results, cfg config, sshd *sshdProc) error {
	const fig = "1. per-command latency of `true`"
	fmt.Fprintln(os.Stderr, "figure 1: latency")
	hello, helloErr := buildHello(b.dir) // before any figure's timing
	rtt, err := loopbackRTT(cfg.rttN)
	if err != nil {
		return err
	}
	r.add(newRow(fig, "loopback TCP 64 B round trip (floor)", "us", durs(rtt, "us")))
	floors := []struct {
		name    string
		measure func(n int, relayed bool) ([]time.Duration, error)
		relayed bool
	}{
		{"  same, between two processes (an echo child)", processRTT, false},
		{"  same, through a relay process (client → relay → echo)", processRTT, true},
		{"  same, on one kept x/crypto/ssh channel to a child (the client → agent shape)", sshChannelRTT, false},
		{"  same, the child relaying the channel over a unix socket to a third process (client → agent → session host)", sshChannelRTT, true},
	}
	for _, f := range floors {
		ds, err := f.measure(cfg.rttN/4, f.relayed)
		if err != nil {
			r.problem("%s: %v", f.name, err)
			continue
		}
		r.ratio(r.add(newRow(fig, f.name, "us", durs(ds, "us"))), "loopback TCP 64 B round trip (floor)")
	}

	a, err := b.startAgent("lat", 100)
	if err != nil {
		return err
	}
	sess, err := b.newSessions(a, 1)
	if err != nil {
		return err
	}
	ctx := context.Background()
	d := b.dialer()
	t := mustTarget(sess[0])
	conn, err := d.Dial(ctx, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	runner := func(keep bool) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			start := time.Now()
			res, err := d.Run(ctx, conn, client.RunSpec{Target: t, Request: wire.Request{Command: "true"}, Stdout: io.Discard, Stderr: io.Discard, KeepChannel: keep})
			if err == nil && res.ExitCode != 0 {
				err = fmt.Errorf("exit %d", res.ExitCode)
			}
			return time.Since(start), err
		}
	}
	repeat(r, "warm-up", 20, runner(true))
	hostPIDs := append(a.sessionPIDs(), a.pid())
	h0, c0 := procsCPU(hostPIDs), selfCPUTime()
	ds, errs := repeat(r, "long-lived Run true", cfg.goN, runner(true))
	h1, c1 := procsCPU(hostPIDs), selfCPUTime()
	x := r.add(newRow(fig, "tether Go client, long-lived conn: Run `true` (builtin)", "us", durs(ds, "us")))
	x.Errors = errs
	r.ratio(x, "loopback TCP 64 B round trip (floor)")
	// CPU is steadier than wall time on a noisy machine (USER_HZ ticks:
	// read over all the runs, not per run).
	perRun := func(d time.Duration) []float64 { return []float64{float64(d.Microseconds()) / float64(cfg.goN)} }
	r.add(newRow(fig, "  CPU per run: agent + session host", "us", perRun(h1-h0)))
	r.add(newRow(fig, "  CPU per run: the Go client (the bench process)", "us", perRun(c1-c0)))
	if sshd != nil {
		// OpenSSH's way to keep a shell's state between commands.
		name := "ssh: `true` in one bash kept open over one connection (marker echo after it)"
		ds, err := sshd.keptShellTrue(ctx, cfg.goN/2)
		if err != nil {
			r.problem("%s: %v", name, err)
		} else {
			r.ratio(r.add(newRow(fig, name, "us", durs(ds, "us"))), "tether Go client, long-lived conn: Run `true` (builtin)")
		}
	}
	ds, errs = repeat(r, "long-lived Run true, new channel", cfg.goN, runner(false))
	x = r.add(newRow(fig, "  same, a new channel per run (no KeepChannel)", "us", durs(ds, "us")))
	x.Errors = errs
	r.ratio(x, "loopback TCP 64 B round trip (floor)")

	// Where a Run's time goes, at the wire level: channel open + request →
	// response, → exit record, → the host closing after our ack.
	var pResp, pExit, pEOF []time.Duration
	for i := 0; i < cfg.goN/2; i++ {
		start := time.Now()
		wc, ch, err := conn.Open(wire.Request{Op: wire.OpRun, Session: t.Session, Command: "true", Client: b.client})
		if err != nil {
			continue
		}
		var resp wire.Response
		if err := wc.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
			ch.Close()
			continue
		}
		tResp := time.Since(start)
		var tExit time.Duration
		for {
			typ, p, err := wc.Read()
			if err != nil {
				break
			}
			if typ != wire.TOutput {
				continue
			}
			o, err := wire.DecodeOutput(p)
			if err == nil && o.Kind == 4 && o.Cmd == resp.Cmd { // exit record
				tExit = time.Since(start)
				wc.WriteU64(wire.TAck, o.Seq, nil)
				break
			}
		}
		for {
			if _, _, err := wc.Read(); err != nil {
				break
			}
		}
		ch.Close()
		if tExit > 0 {
			pResp, pExit, pEOF = append(pResp, tResp), append(pExit, tExit-tResp), append(pEOF, time.Since(start)-tExit)
		}
	}
	r.add(newRow(fig, "  Run breakdown: open channel + request → response", "us", durs(pResp, "us")))
	r.add(newRow(fig, "  Run breakdown: response → exit record", "us", durs(pExit, "us")))
	r.add(newRow(fig, "  Run breakdown: ack → host closes the channel", "us", durs(pEOF, "us")))
	time.Sleep(20 * time.Millisecond)

	for _, op := range []struct {
		name string
		req  wire.Op
	}{
		{"tether Go client, long-lived conn: Call status (relayed to session host)", "status"},
		{"tether Go client, long-lived conn: Call config.get (agent only)", "config.get"},
	} {
		req := wire.Request{Op: op.req, Session: t.Session, Client: b.client}
		if op.req == wire.OpConfigGet {
			req = wire.Request{Op: op.req, Key: "IdleTimeout", Client: b.client}
		}
		call := func() (time.Duration, error) {
			start := time.Now()
			_, err := conn.Call(ctx, req)
			return time.Since(start), err
		}
		repeat(r, "warm-up", 20, call)
		ds, errs := repeat(r, op.name, cfg.goN, call)
		x := r.add(newRow(fig, op.name, "us", durs(ds, "us")))
		x.Errors = errs
		r.ratio(x, "loopback TCP 64 B round trip (floor)")
	}

	// The SSH handshake alone, in Go, for the breakdown.
	ds, errs = repeat(r, "Go dial", min(cfg.goN/10, 200), func() (time.Duration, error) {
		start := time.Now()
		c, err := d.Dial(ctx, t)
		if err != nil {
			return 0, err
		}
		el := time.Since(start)
		c.Close()
		return el, nil
	})
	x = r.add(newRow(fig, "tether Go client: Dial (TCP + SSH handshake + auth)", "ms", durs(ds, "ms")))
	x.Errors = errs

	cli := func() (time.Duration, error) {
		return timeRun(b.tetherCmd(ctx, "invoke", sess[0], "true"))
	}
	repeat(r, "warm-up", 3, cli)
	ds, errs = repeat(r, "tether invoke H/S true", cfg.cliN, cli)
	x = r.add(newRow(fig, "tether invoke H/S true (fresh CLI process)", "ms", durs(ds, "ms")))
	x.Errors = errs

	// The same with tether's ControlMaster equivalent up, as ssh's below.
	muxCmd := func(args ...string) *exec.Cmd {
		cmd := b.tetherCmd(ctx, args...)
		run := filepath.Join(b.home, "run")
		os.MkdirAll(run, 0o700)
		cmd.Env = append(cmd.Env, "TETHER_CONTROL_PERSIST=10m", "XDG_RUNTIME_DIR="+run)
		return cmd
	}
	timeRun(muxCmd("invoke", sess[0], "true")) // starts the master
	for i := 0; i < 50 && muxCmd("mux", "status", sess[0]).Run() != nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	// Both masters up, the two commands in turns (the target's pair).
	var cm []string
	if sshd != nil {
		var err error
		if cm, err = sshd.startMaster(); err != nil {
			r.problem("ControlMaster: %v", err)
		}
	}
	muxRun := func() (time.Duration, error) { return timeRun(muxCmd("invoke", sess[0], "true")) }
	if cm != nil {
		pair, perrs := inTurns(r, [2]string{"tether invoke H/S true, mux", "ssh ControlMaster true"}, max(cfg.cliN, cfg.cmN), [2]func() (time.Duration, error){
			muxRun,
			func() (time.Duration, error) { return timeRun(sshd.command(ctx, cm, "true")) },
		})
		x = r.add(newRow(fig, "tether invoke H/S true (fresh CLI, TETHER_CONTROL_PERSIST master up)", "ms", durs(pair[0], "ms")))
		x.Errors = perrs[0]
		x = r.add(newRow(fig, "ssh host true (ControlMaster up)", "ms", durs(pair[1], "ms")))
		x.Errors = perrs[1]
		r.note("fresh invoke with tether's master and ssh with its ControlMaster are measured in turns (one of each, %d times)", max(cfg.cliN, cfg.cmN))
	} else {
		ds, errs = repeat(r, "tether invoke H/S true, mux", cfg.cliN, muxRun)
		x = r.add(newRow(fig, "tether invoke H/S true (fresh CLI, TETHER_CONTROL_PERSIST master up)", "ms", durs(ds, "ms")))
		x.Errors = errs
	}
	muxCmd("mux", "stop", sess[0]).Run()

	ds, errs = repeat(r, "tether invoke H true", cfg.cliN/2, func() (time.Duration, error) {
		return timeRun(b.tetherCmd(ctx, "invoke", a.addr, "true"))
	})
	x = r.add(newRow(fig, "tether invoke H true (fresh CLI, temporary session)", "ms", durs(ds, "ms")))
	x.Errors = errs

	ds, errs = repeat(r, "tether version", cfg.cliN/2, func() (time.Duration, error) {
		return timeRun(b.tetherCmd(ctx, "version"))
	})
	r.add(newRow(fig, "tether version (process start only)", "ms", durs(ds, "ms")))
	if helloErr != nil {
		r.problem("hello: %v", helloErr)
	} else {
		ds, errs = repeat(r, "hello", cfg.cliN/2, func() (time.Duration, error) { return timeRun(exec.CommandContext(ctx, hello)) })
		x = r.add(newRow(fig, "  a static Go hello world (any Go CLI's start)", "ms", durs(ds, "ms")))
		x.Errors = errs
		r.ratio(x, "tether version (process start only)")
	}

	if sshd != nil {
		ds, errs = repeat(r, "ssh true", cfg.sshN, func() (time.Duration, error) {
			return timeRun(sshd.command(ctx, nil, "true"))
		})
		x = r.add(newRow(fig, "ssh host true (new connection, default kex)", "ms", durs(ds, "ms")))
		x.Errors = errs
		ds, errs = repeat(r, "ssh true curve25519", cfg.sshN, func() (time.Duration, error) {
			return timeRun(sshd.command(ctx, []string{"-o", "KexAlgorithms=curve25519-sha256"}, "true"))
		})
		x = r.add(newRow(fig, "ssh host true (new connection, curve25519-sha256)", "ms", durs(ds, "ms")))
		x.Errors = errs
		r.ratio(r.find("tether invoke H/S true (fresh CLI process)"), "ssh host true (ControlMaster up)")
		r.ratio(r.find("tether invoke H/S true (fresh CLI, TETHER_CONTROL_PERSIST master up)"), "ssh host true (ControlMaster up)")
		r.ratio(r.find("tether invoke H true (fresh CLI, temporary session)"), "ssh host true (new connection, default kex)")
	}
	return nil
}

// ---- Figure 6: session creation ----

func (b *bench) figCreate(r *results, cfg config, sshd *sshdProc) error {
	const fig = "6. session creation"
	fmt.Fprintln(os.Stderr, "figure 6: session creation")
	a, err := b.startAgent("create", cfg.createN+50)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var made []string
	ds, errs := repeat(r, "tether new", cfg.createN, func() (time.Duration, error) {
		args := []string{"new", a.addr}
		if b.shell == "bash" {
			// An empty profile (the figure): root's own profile
			// here runs pyenv init (~0.5 s).
			args = []string{"new", "--no-profile", a.addr}
		}
		cmd := b.tetherCmd(ctx, args...)
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, &out, &errb
		start := time.Now()
		err := cmd.Run()
		el := time.Since(start)
		if err != nil {
			return el, fmt.Errorf("%v: %s", err, errb.String())
		}
		made = append(made, strings.TrimSpace(out.String()))
		return el, nil
	})
	x := r.add(newRow(fig, "tether new H (fresh CLI process)", "ms", durs(ds, "ms")))
	x.Errors = errs

	d := b.dialer()
	conn, err := d.Dial(ctx, mustTarget(a.addr))
	if err != nil {
		return err
	}
	ds, errs = repeat(r, "Call new", cfg.createN, func() (time.Duration, error) {
		start := time.Now()
		resp, err := conn.Call(ctx, wire.Request{Op: wire.OpNew, Client: b.client, NoProfile: b.shell == "bash"})
		if err == nil {
			made = append(made, a.addr+"/"+resp.Session.Name)
		}
		return time.Since(start), err
	})
	conn.Close()
	x = r.add(newRow(fig, "tether Go client, long-lived conn: Call new", "ms", durs(ds, "ms")))
	x.Errors = errs
	if sshd != nil {
		ds, errs = repeat(r, "ssh true", cfg.createN/2, func() (time.Duration, error) {
			return timeRun(sshd.command(ctx, nil, "true"))
		})
		x = r.add(newRow(fig, "ssh host true (new connection = new sshd session)", "ms", durs(ds, "ms")))
		x.Errors = errs
		r.ratio(r.find("tether new H (fresh CLI process)"), x.Name)
	}
	b.removeSessions(made)
	a.stop()
	return nil
}

// ---- Figure 2: throughput ----

func (b *bench) figThroughput(r *results, cfg config, sshd *sshdProc) error {
	const fig = "2. throughput of command output"
	fmt.Fprintln(os.Stderr, "figure 2: throughput")
	n := cfg.tputBytes
	mib := float64(n) / (1 << 20)
	remote := fmt.Sprintf("head -c %d /dev/zero", n)
	rate := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = mib / d.Seconds()
		}
		return out
	}
	label := fmt.Sprintf("%d MiB", n>>20)

	// Floor: the same head writing straight into a loopback TCP socket.
	ds, errs := repeat(r, "raw tcp", cfg.tputReps, func() (time.Duration, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		got := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- -1
				return
			}
			k, _ := io.Copy(io.Discard, c)
			c.Close()
			got <- k
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return 0, err
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			return 0, err
		}
		cmd := exec.Command("head", "-c", fmt.Sprint(n), "/dev/zero")
		cmd.Stdout = f
		start := time.Now()
		err = cmd.Run()
		f.Close()
		k := <-got
		el := time.Since(start)
		if err == nil && k != n {
			err = fmt.Errorf("got %d bytes", k)
		}
		return el, err
	})
	x := r.add(newRow(fig, "raw loopback TCP: head -c "+label+" into a socket (floor)", "MiB/s", rate(ds)))
	x.Errors = errs
	floor := x.Name

	a, err := b.startAgent("tput", 100)
	if err != nil {
		return err
	}
	sess, err := b.newSessions(a, 1)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ds, errs = repeat(r, "tether invoke head", cfg.tputReps, func() (time.Duration, error) {
		return timeRun(b.tetherCmd(ctx, "invoke", sess[0], remote))
	})
	x = r.add(newRow(fig, "tether invoke H/S head -c "+label+" >/dev/null (fresh CLI)", "MiB/s", rate(ds)))
	x.Errors = errs
	tetherRow := x

	d := b.dialer()
	t := mustTarget(sess[0])
	conn, err := d.Dial(ctx, t)
	if err != nil {
		return err
	}
	ds, errs = repeat(r, "Go Run head", cfg.tputReps, func() (time.Duration, error) {
		return timeGoRun(ctx, d, conn, t, remote, n)
	})
	conn.Close()
	x = r.add(newRow(fig, "tether Go client, long-lived conn: Run head -c "+label+" to io.Discard", "MiB/s", rate(ds)))
	x.Errors = errs
	r.ratio(x, floor)
	var gcm *row
	if sshd != nil {
		for _, c := range []struct {
			name string
			opts []string
		}{
			{"default cipher (chacha20-poly1305)", nil},
			{"aes128-gcm@openssh.com", []string{"-c", "aes128-gcm@openssh.com"}},
		} {
			ds, errs = repeat(r, "ssh head", cfg.tputReps, func() (time.Duration, error) {
				return timeRun(sshd.command(ctx, c.opts, remote))
			})
			x = r.add(newRow(fig, "ssh host head -c "+label+" >/dev/null, "+c.name, "MiB/s", rate(ds)))
			x.Errors = errs
			r.ratio(x, floor)
			gcm = x
		}
		r.ratio(tetherRow, gcm.Name)
		r.ratio(r.find("tether Go client, long-lived conn: Run head -c "+label+" to io.Discard"), gcm.Name)
	} else {
		r.ratio(tetherRow, floor)
	}
	a.stop()
	return nil
}

// timeGoRun runs remote, which writes n bytes, through the long-lived Go
// client on conn and times it, output counted and dropped.
func timeGoRun(ctx context.Context, d *client.Dialer, conn *client.Conn, t client.Target, remote string, n int64) (time.Duration, error) {
	cw := &countWriter{}
	start := time.Now()
	_, err := d.Run(ctx, conn, client.RunSpec{Target: t, Request: wire.Request{Command: remote}, Stdout: cw, Stderr: io.Discard})
	el := time.Since(start)
	if err == nil && cw.n != n {
		err = fmt.Errorf("got %d bytes", cw.n)
	}
	return el, err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// ---- Figure 3: fan-out ----

func (b *bench) figFanout(r *results, cfg config, sshd *sshdProc) error {
	const fig = "3. fan-out: `true` on N existing sessions"
	fmt.Fprintln(os.Stderr, "figure 3: fan-out")
	ctx := context.Background()
	type point struct {
		series string
		n      int
		secs   float64
	}
	var points []point
	record := func(name, series string, n int, ds []time.Duration, nerr int) *row {
		x := r.add(newRow(fig, name, "s", durs(ds, "s")))
		x.Errors = nerr
		x.Extra = map[string]any{"N": n, "hosts_per_s": float64(n) / x.Median}
		if x.N > 0 {
			points = append(points, point{series, n, x.Median})
		}
		return x
	}
	// OpenSSH first, before any tether session exists, so that tether's idle
	// sessions cost ssh nothing.
	if sshd != nil {
		for _, n := range cfg.fanNs {
			reps := cfg.fanReps
			switch {
			case n >= 1000:
				reps = 1
			case n >= 100:
				reps = min(reps, 2)
			}
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("b%04d", i)
			}
			ds, nerr := repeat(r, fmt.Sprintf("xargs ssh N=%d", n), reps, func() (time.Duration, error) {
				cmd := exec.Command("xargs", "-P", fmt.Sprint(cfg.xargsPar), "-I{}", "ssh", "-F", sshd.sshConfig, "-n", "{}", "true")
				cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + sshd.dir}
				var errb bytes.Buffer
				cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(strings.Join(hosts, "\n")+"\n"), devNull, &errb
				t0 := time.Now()
				err := cmd.Run()
				el := time.Since(t0)
				if err != nil {
					return el, fmt.Errorf("%v: %.300s", err, errb.String())
				}
				return el, nil
			})
			record(fmt.Sprintf("xargs -P %d ssh, N=%d", cfg.xargsPar, n), fmt.Sprintf("xargs -P %d ssh", cfg.xargsPar), n, ds, nerr)
			if _, err := exec.LookPath("pdsh"); err == nil && n <= 100 {
				ds, nerr := repeat(r, fmt.Sprintf("pdsh N=%d", n), reps, func() (time.Duration, error) {
					cmd := exec.Command("pdsh", "-R", "ssh", "-f", fmt.Sprint(cfg.xargsPar), "-w", strings.Join(hosts, ","), "true")
					cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + sshd.dir,
						"PDSH_SSH_ARGS=-F " + sshd.sshConfig + " %h"}
					var out bytes.Buffer
					cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, &out, &out
					t0 := time.Now()
					err := cmd.Run()
					el := time.Since(t0)
					if err != nil || strings.TrimSpace(out.String()) != "" {
						return el, fmt.Errorf("%v: %.300s", err, out.String())
					}
					return el, nil
				})
				x := record(fmt.Sprintf("pdsh -R ssh -f %d, N=%d", cfg.xargsPar, n), fmt.Sprintf("pdsh -f %d", cfg.xargsPar), n, ds, nerr)
				r.ratio(x, fmt.Sprintf("xargs -P %d ssh, N=%d", cfg.xargsPar, n))
			}
		}
		r.note("pdsh is run up to N=100 only (it costs what xargs -P 32 ssh costs per host, see the table); xargs -P 32 ssh goes to N=%d", cfg.fanNs[len(cfg.fanNs)-1])
	}

	agents := make([]*agentProc, cfg.fanAgents)
	for i := range agents {
		a, err := b.startAgent(fmt.Sprintf("fan%d", i), cfg.fanNs[len(cfg.fanNs)-1]/cfg.fanAgents+50)
		if err != nil {
			return err
		}
		agents[i] = a
	}
	settle()
	bases := make([]mem, len(agents))
	for i, a := range agents {
		bases[i], _ = readMem(a.pid())
	}
	lists := make([][]string, cfg.fanAgents)
	have := 0
	for _, n := range cfg.fanNs {
		// Open sessions up to n, spread evenly, one Go connection per agent.
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, cfg.fanAgents)
		for i, a := range agents {
			want := n / cfg.fanAgents
			if i < n%cfg.fanAgents {
				want++
			}
			if want <= len(lists[i]) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := b.newSessions(a, want-len(lists[i]))
				lists[i] = append(lists[i], s...)
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				r.problem("fan-out: opening sessions: %v", err)
			}
		}
		var all []string
		for i := 0; ; i++ {
			added := false
			for _, l := range lists {
				if i < len(l) {
					all = append(all, l[i])
					added = true
				}
			}
			if !added {
				break
			}
		}
		r.note("fan-out: opened sessions %d..%d over %d agents in %.1f s (Go client, one connection per agent, in parallel)", have+1, len(all), cfg.fanAgents, time.Since(start).Seconds())
		have = len(all)
		if len(all) < n {
			r.problem("fan-out: only %d of %d sessions could be opened", len(all), n)
			n = len(all)
		}
		// What the idle sessions cost: PSS and CPU.
		settle()
		var pids []int
		for _, a := range agents {
			pids = append(pids, a.sessionPIDs()...)
		}
		tree := children()
		hosts, procs := sumMem(pids, tree, nil)
		growth := 0.0
		for i, a := range agents {
			m, _ := readMem(a.pid())
			growth += float64(m.pss - bases[i].pss)
		}
		growth /= float64(len(all))
		x := r.add(newRow("5. memory per idle session (PSS)", fmt.Sprintf("tether: session host + agent growth/N, N=%d (%d agents)", len(all), cfg.fanAgents), "KiB",
			[]float64{float64(hosts.pss)/float64(len(all)) + growth}))
		x.Extra = map[string]any{"sessions": len(all), "daemon_growth_per_session_kib": growth, "per_session_rss_kib": float64(hosts.rss) / float64(len(all)),
			"per_session_private_kib": float64(hosts.private) / float64(len(all)), "processes": procs}
		cpu := idleCPU(pids, 3*time.Second)
		y := r.add(newRow("5. memory per idle session (PSS)", fmt.Sprintf("tether: CPU used by %d idle session hosts (100 = one core)", len(all)), "%", []float64{cpu}))
		y.Extra = map[string]any{"per_session_percent": cpu / float64(len(all)), "load_average": loadavg()}

		targets := strings.Join(all[:n], ",")
		var agentPIDs []int
		for _, a := range agents {
			agentPIDs = append(agentPIDs, a.pid())
		}
		for _, th := range cfg.throttles {
			reps := cfg.fanReps
			if n >= 1000 {
				reps = min(reps, 2)
			}
			// CPU per target by process kind: wall time on a shared machine
			// is noisy, CPU time is what a regression shows up in (from
			// /proc/PID/stat, which counts threads that have exited).
			var cpuClient, cpuAgents, cpuHosts time.Duration
			runs := 0
			ds, nerr := repeat(r, fmt.Sprintf("tether invoke N=%d throttle %d", n, th), reps, func() (time.Duration, error) {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				cmd := b.tetherCmd(ctx, "invoke", "--throttle", fmt.Sprint(th), targets, "true")
				var errb bytes.Buffer
				cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, devNull, &errb
				a0, h0 := procsCPU(agentPIDs), procsCPU(pids)
				t0 := time.Now()
				err := cmd.Run()
				el := time.Since(t0)
				cpuAgents += procsCPU(agentPIDs) - a0
				cpuHosts += procsCPU(pids) - h0
				if cmd.ProcessState != nil {
					cpuClient += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				runs++
				if err != nil {
					lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
					return el, fmt.Errorf("%v; %d stderr lines, first: %s", err, len(lines), lines[0])
				}
				return el, nil
			})
			x := record(fmt.Sprintf("tether invoke --throttle %d, N=%d", th, n), fmt.Sprintf("tether --throttle %d", th), n, ds, nerr)
			r.ratio(x, fmt.Sprintf("xargs -P %d ssh, N=%d", cfg.xargsPar, n))
			if runs > 0 {
				per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(runs*n) }
				for _, c := range []struct {
					who string
					d   time.Duration
				}{{"client (the CLI)", cpuClient}, {"agents", cpuAgents}, {"session hosts", cpuHosts}} {
					r.add(newRow(fig, fmt.Sprintf("  CPU per target, --throttle %d, N=%d: %s", th, n, c.who), "us", []float64{per(c.d)}))
				}
			}
		}
		if n == cfg.fanNs[len(cfg.fanNs)-1] {
			b.fanoutFold(r, fig, n, targets, cfg)
		}
	}
	// The plot.
	series := map[string][]xy{}
	var order []string
	for _, p := range points {
		if _, ok := series[p.series]; !ok {
			order = append(order, p.series)
		}
		series[p.series] = append(series[p.series], xy{float64(p.n), p.secs})
	}
	if err := writeFanoutSVG(cfg.svgPath(), order, series); err != nil {
		r.problem("fanout.svg: %v", err)
	}
	for _, a := range agents {
		if !a.alive() {
			r.problem("fan-out agent %s died", a.addr)
		}
		a.stop()
	}
	return nil
}

// fanoutFold measures invoke --fold against the same run streaming
// (issue 16: --fold costs at most 10 % more), with `hostname`, whose
// output is identical on every session of a machine: one group. The two
// run in turns (plain, folded, plain, …) so that the machine's drift over
// the figure falls on both alike.
func (b *bench) fanoutFold(r *results, fig string, n int, targets string, cfg config) {
	th := cfg.throttles[len(cfg.throttles)-1]
	reps := max(cfg.fanReps, 3)
	names := [2]string{fmt.Sprintf("tether invoke hostname, N=%d", n), fmt.Sprintf("tether invoke --fold hostname, N=%d", n)}
	run := func(fold bool) (time.Duration, error) {
		args := []string{"invoke", "--throttle", fmt.Sprint(th)}
		if fold {
			args = append(args, "--fold")
		}
		args = append(args, targets, "hostname")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := b.tetherCmd(ctx, args...)
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, &out, &errb
		t0 := time.Now()
		err := cmd.Run()
		el := time.Since(t0)
		if err != nil {
			// --fold prints a failed target's error in its group: the
			// groups after the largest (at stdout's end) say why.
			o := out.String()
			return el, fmt.Errorf("%v: %.300s; output's end: %s", err, errb.String(), o[max(0, len(o)-1500):])
		}
		if fold && !strings.Contains(out.String(), fmt.Sprintf(" (%d)\n", n)) {
			return el, fmt.Errorf("--fold did not print one group of %d: %.300s", n, out.String())
		}
		return el, nil
	}
	var ds [2][]time.Duration
	var nerr [2]int
	for i := 0; i < reps; i++ {
		for k, fold := range []bool{false, true} {
			el, err := run(fold)
			if err != nil {
				if nerr[k]++; nerr[k] <= 3 {
					r.problem("%s: %v", names[k], err)
				}
				continue
			}
			ds[k] = append(ds[k], el)
		}
	}
	for k := range names {
		x := r.add(newRow(fig, names[k], "s", durs(ds[k], "s")))
		x.Errors = nerr[k]
		x.Extra = map[string]any{"N": n, "throttle": th}
		if k == 1 {
			r.ratio(x, names[0])
		}
	}
}

// idleCPU is the CPU the processes use over d, in percent of one core.
func idleCPU(pids []int, d time.Duration) float64 {
	t0 := procsCPU(pids)
	start := time.Now()
	time.Sleep(d)
	return float64(procsCPU(pids)-t0) / float64(time.Since(start)) * 100
}

// procsCPU is the user+system CPU time the processes have used.
func procsCPU(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			var u, s int64
			fmt.Sscan(f[11], &u)
			fmt.Sscan(f[12], &s)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// ---- Figure 4: reconnect ----

// stampWriter remembers when output arrives.
type stampWriter struct {
	mu     sync.Mutex
	lines  int
	after  time.Time // report the first write after this
	first  chan time.Time
	notice chan time.Time
}

func (s *stampWriter) Write(p []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	s.lines++
	if s.first != nil && now.After(s.after) {
		select {
		case s.first <- now:
		default:
		}
	}
	s.mu.Unlock()
	return len(p), nil
}

type noticeWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan string
}

func (n *noticeWriter) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.buf.Write(p)
	for {
		line, err := n.buf.ReadString('\n')
		if err != nil {
			n.buf.WriteString(line)
			break
		}
		select {
		case n.ch <- line:
		default:
		}
	}
	return len(p), nil
}

func (b *bench) figReconnect(r *results, cfg config) error {
	const fig = "4. reconnect"
	fmt.Fprintln(os.Stderr, "figure 4: reconnect")
	a, err := b.startAgent("recon", 100)
	if err != nil {
		return err
	}
	px, err := newCutProxy(a.addr)
	if err != nil {
		return err
	}
	defer px.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := b.dialer()
	// The session is opened through the proxy, so its address is the proxy's.
	c, err := d.Dial(ctx, mustTarget(px.addr()))
	if err != nil {
		return err
	}
	resp, err := c.Call(ctx, wire.Request{Op: wire.OpNew, Client: b.client})
	c.Close()
	if err != nil {
		return err
	}
	t := mustTarget(px.addr() + "/" + resp.Session.Name)
	out := &stampWriter{}
	notes := &noticeWriter{ch: make(chan string, 16)}
	runErr := make(chan error, 1)
	go func() {
		_, err := d.Run(ctx, nil, client.RunSpec{Target: t,
			Request: wire.Request{Command: "while :; do echo tick; sleep 0.01; done"},
			Stdout:  out, Stderr: io.Discard, Notify: notes})
		runErr <- err
	}()
	waitLines := func(k int) error {
		out.mu.Lock()
		base := out.lines
		out.mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			out.mu.Lock()
			got := out.lines - base
			out.mu.Unlock()
			if got >= k {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return fmt.Errorf("output did not flow")
	}
	var toByte, toNotice []time.Duration
	nerr := 0
	for i := 0; i < cfg.reconReps; i++ {
		if err := waitLines(5); err != nil {
			return err
		}
		for len(notes.ch) > 0 {
			<-notes.ch
		}
		first := make(chan time.Time, 1)
		// Set "after" once the reconnect notice arrives: bytes already in
		// flight before the cut do not count.
		t0 := time.Now()
		px.cut()
		var tNotice time.Time
		ok := false
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case line := <-notes.ch:
				if strings.Contains(line, "reconnected") {
					tNotice = time.Now()
					out.mu.Lock()
					out.after, out.first = tNotice, first
					out.mu.Unlock()
					ok = true
					break wait
				}
			case err := <-runErr:
				return fmt.Errorf("run ended after a cut: %v", err)
			case <-deadline:
				break wait
			}
		}
		if !ok {
			nerr++
			r.problem("reconnect %d: no 'reconnected' notice within 30s", i+1)
			continue
		}
		select {
		case tb := <-first:
			toByte = append(toByte, tb.Sub(t0))
			toNotice = append(toNotice, tNotice.Sub(t0))
		case <-time.After(10 * time.Second):
			nerr++
			r.problem("reconnect %d: no output after reconnecting", i+1)
		}
		out.mu.Lock()
		out.first = nil
		out.mu.Unlock()
	}
	x := r.add(newRow(fig, "connection reset → next output byte at the client (Go client, RST by proxy)", "ms", durs(toByte, "ms")))
	x.Errors = nerr
	r.add(newRow(fig, "connection reset → client's 'reconnected' notice", "ms", durs(toNotice, "ms")))
	cancel()
	<-runErr

	// connect → first byte of receive, with the CLI.
	sess, err := b.newSessions(a, 1)
	if err != nil {
		return err
	}
	if out, err := b.tether(nil, "invoke", "--disconnected", sess[0], "while :; do echo tick; sleep 0.01; done"); err != nil {
		return fmt.Errorf("invoke --disconnected: %v: %s", err, out)
	}
	bg := context.Background()
	var toFirst, connectOnly []time.Duration
	nerr = 0
	for i := 0; i < cfg.reconReps; i++ {
		b.tether(nil, "disconnect", sess[0])
		time.Sleep(30 * time.Millisecond)
		t0 := time.Now()
		if out, err := b.tether(nil, "connect", sess[0]); err != nil {
			nerr++
			r.problem("tether connect: %v: %s", err, out)
			continue
		}
		tc := time.Now()
		rc := b.tetherCmd(bg, "receive", sess[0])
		pr, err := rc.StdoutPipe()
		if err != nil {
			return err
		}
		rc.Stdin = devNull
		var errb bytes.Buffer
		rc.Stderr = &errb
		if err := rc.Start(); err != nil {
			return err
		}
		one := make([]byte, 1)
		got := make(chan error, 1)
		go func() { _, err := io.ReadFull(pr, one); got <- err }()
		select {
		case err := <-got:
			if err != nil {
				nerr++
				r.problem("tether receive: %v: %s", err, errb.String())
			} else {
				toFirst = append(toFirst, time.Since(t0))
				connectOnly = append(connectOnly, tc.Sub(t0))
			}
		case <-time.After(20 * time.Second):
			nerr++
			r.problem("tether receive: no byte within 20s")
		}
		rc.Process.Kill()
		rc.Wait()
	}
	x = r.add(newRow(fig, "tether connect H/S, then tether receive H/S: start → first byte (2 CLI processes)", "ms", durs(toFirst, "ms")))
	x.Errors = nerr
	r.add(newRow(fig, "  of which tether connect H/S (CLI process)", "ms", durs(connectOnly, "ms")))
	b.removeSessions(append(sess, t.String()))
	a.stop()
	return nil
}
