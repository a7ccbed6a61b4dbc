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
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/sshconn"
)

// ---- Figure 11: input throughput and imported proxy commands (#18) ----
//
// Input: N bytes of zeros written into the client's stdin, read on the host
// by `cat >/dev/null`, through `tether invoke` and through ssh -c
// aes128-gcm in the same run. Proxy: one call of a command made by `tether
// import` (a module command that runs `true`), against a fresh `tether
// invoke H/S true` of the same client, both measured in turns. Output
// through a long-lived Go client against the fresh CLI, in turns: once with
// this process's own runtime settings, once with the CLI's for a one-target
// invoke (one P, GOGC 400), so that the library and the runtime settings
// are told apart, and x/crypto/ssh alone reading OpenSSH's sshd in this
// process (the floor under the library, with this process's settings).

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
	a, err := b.startAgent("perf18", 0, "--modules", modDir)
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

	if err := b.goClientVsCLI(r, fig, sess[0], sshd, n, cfg.tputReps, rate); err != nil {
		return err
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

// goClientVsCLI measures N bytes of output (head -c N) through the fresh
// CLI and through a long-lived Go client, with this process's runtime
// settings and with the CLI's (GOMAXPROCS 1, GOGC 400), in turns; with
// sshd, also x/crypto/ssh alone in this process (a session of OpenSSH's
// sshd, aes128-gcm, read with io.Copy): the floor that the Go client's
// library sits on, so that what internal/client adds is told apart from
// what x/crypto/ssh costs under this process's settings.
func (b *bench) goClientVsCLI(r *results, fig, session string, sshd *sshdProc, n int64, reps int, rate func([]time.Duration) []float64) error {
	ctx := context.Background()
	remote := fmt.Sprintf("head -c %d /dev/zero", n)
	label := fmt.Sprintf("%d MiB", n>>20)
	d := b.dialer()
	t := mustTarget(session)
	conn, err := d.Dial(ctx, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	goRun := func(cliSettings bool) (time.Duration, error) {
		if cliSettings {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			defer debug.SetGCPercent(debug.SetGCPercent(400))
		}
		return timeGoRun(ctx, d, conn, t, remote, n)
	}
	// The client's CPU per GiB of each run: the CLI's from its rusage,
	// an in-process run's from this process's (the bench does nothing
	// else meanwhile). Under load, wall-clock rates swing more than this.
	var lastCLICPU time.Duration
	cliRun := func() (time.Duration, error) {
		cmd := b.tetherCmd(ctx, "invoke", session, remote)
		d, err := timeRun(cmd)
		if err == nil {
			lastCLICPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		return d, err
	}
	runs := []func() (time.Duration, error){
		cliRun,
		func() (time.Duration, error) { return goRun(false) },
		func() (time.Duration, error) { return goRun(true) },
	}
	if sshd != nil {
		xc, err := sshd.goClient()
		if err != nil {
			return err
		}
		defer xc.Close()
		runs = append(runs, func() (time.Duration, error) { return timeXCryptoRun(xc, remote, n) })
	}
	var cliDs, goDs, goCLIDs, xcDs []time.Duration
	cpus := make([][]float64, len(runs)) // client CPU-s per GiB
	gib := float64(n) / (1 << 30)
	errs := 0
	for i := 0; i < reps; i++ {
		for k, f := range runs {
			c0 := selfCPUTime()
			el, err := f()
			if err == nil {
				c := selfCPUTime() - c0
				if k == 0 {
					c = lastCLICPU
				}
				cpus[k] = append(cpus[k], c.Seconds()/gib)
			}
			if err != nil {
				if errs++; errs <= 3 {
					r.problem("output in turns: %v", err)
				}
				continue
			}
			switch k {
			case 0:
				cliDs = append(cliDs, el)
			case 1:
				goDs = append(goDs, el)
			case 2:
				goCLIDs = append(goCLIDs, el)
			default:
				xcDs = append(xcDs, el)
			}
		}
	}
	withCPU := func(x *row, k int) *row {
		if len(cpus[k]) > 0 {
			x.Extra = map[string]any{"client_cpu_s_per_gib": cpuMedian(cpus[k])}
		}
		return x
	}
	ref := withCPU(r.add(newRow(fig, "tether invoke H/S head -c "+label+" >/dev/null (fresh CLI, in turns with the Go client)", "MiB/s", rate(cliDs))), 0)
	ref.Errors = errs
	x := withCPU(r.add(newRow(fig, "  Go client, long-lived conn, this process's settings (GOGC 100, all Ps)", "MiB/s", rate(goDs))), 1)
	r.ratio(x, ref.Name)
	x = withCPU(r.add(newRow(fig, "  Go client, long-lived conn, the CLI's settings (GOMAXPROCS 1, GOGC 400)", "MiB/s", rate(goCLIDs))), 2)
	r.ratio(x, ref.Name)
	if sshd != nil {
		// Its rate is sshd's too; its client CPU per GiB is the floor.
		x = withCPU(r.add(newRow(fig, "  x/crypto/ssh alone reading sshd (aes128-gcm, io.Copy), this process's settings", "MiB/s", rate(xcDs))), 3)
		r.ratio(x, ref.Name)
	}
	for k, name := range []string{"fresh CLI", "Go client, this process's settings", "Go client, the CLI's settings", "x/crypto/ssh alone from sshd, this process's settings"} {
		if k < len(cpus) && len(cpus[k]) > 0 {
			r.note("output in turns: client CPU per GiB, %s: %.2f s (median of %d)", name, cpuMedian(cpus[k]), len(cpus[k]))
		}
	}
	return nil
}

func cpuMedian(v []float64) float64 {
	_, _, med, _, _, _ := summarize(v)
	return med
}

// selfCPUTime is this process's user and system CPU so far.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// goClient is an x/crypto/ssh client of this process to sshd: aes128-gcm,
// over internal/sshconn as tether's own client connections are.
func (s *sshdProc) goClient() (*ssh.Client, error) {
	signer, err := readSigner(s.key)
	if err != nil {
		return nil, err
	}
	hkb, err := os.ReadFile(filepath.Join(s.dir, "host_ed25519_key.pub"))
	if err != nil {
		return nil, err
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(hkb)
	if err != nil {
		return nil, fmt.Errorf("sshd host key: %w", err)
	}
	cfg := &ssh.ClientConfig{User: sshUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(hk),
		Config: ssh.Config{Ciphers: []string{"aes128-gcm@openssh.com"}}, Timeout: 10 * time.Second}
	nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 10*time.Second)
	if err != nil {
		return nil, err
	}
	sc, chans, reqs, err := ssh.NewClientConn(sshconn.New(nc), nc.RemoteAddr().String(), cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("x/crypto/ssh to sshd: %w", err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func readSigner(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(pem)
}

// timeXCryptoRun runs remote in a session of xc and reads its stdout with
// io.Copy, as a plain x/crypto/ssh program would.
func timeXCryptoRun(xc *ssh.Client, remote string, n int64) (time.Duration, error) {
	start := time.Now()
	sess, err := xc.NewSession()
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := sess.Start(remote); err != nil {
		return 0, err
	}
	cw := &countWriter{}
	_, err = io.CopyBuffer(cw, out, make([]byte, 256<<10))
	if werr := sess.Wait(); err == nil {
		err = werr
	}
	el := time.Since(start)
	if err == nil && cw.n != n {
		err = fmt.Errorf("x/crypto/ssh from sshd: got %d bytes, want %d", cw.n, n)
	}
	return el, err
}
