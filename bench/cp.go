package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// figCp is `tether cp` against scp (OpenSSH 9: SFTP underneath) to the
// private sshd with aes128-gcm: one large file each way (to the session
// or host, and from it), and a tree of 2,000 small files (-r), rsync -a
// noted beside it. All write to a fresh directory on the same machine;
// rates are of the whole command (a fresh CLI each).
func (b *bench) figCp(r *results, cfg config, sshd *sshdProc) error {
	const fig = "8. tether cp vs scp"
	fmt.Fprintln(os.Stderr, "figure 8: cp")
	if sshd == nil {
		s, err := b.startSSHD()
		if err != nil {
			r.problem("cp: OpenSSH comparison skipped: %v", err)
		} else {
			sshd = s
			defer s.stop()
		}
	}
	size := cfg.tputBytes
	src, err := os.MkdirTemp("", "tether-bench-cp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	os.Chmod(src, 0o755) // the pulls read big.bin: scp as the sshd's user
	big := filepath.Join(src, "big.bin")
	if out, err := exec.Command("head", "-c", strconv.FormatInt(size, 10), "/dev/urandom").Output(); err != nil {
		return err
	} else if err := os.WriteFile(big, out, 0o644); err != nil {
		return err
	}
	tree := filepath.Join(src, "tree")
	const nFiles = 2000
	for i := 0; i < nFiles; i++ {
		d := filepath.Join(tree, fmt.Sprintf("d%02d", i%20))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), []byte(fmt.Sprintf("file %d\n%0*d\n", i, i%3000, 0)), 0o644)
	}

	// Destinations: a directory each side may write, emptied per run.
	dst, err := os.MkdirTemp("", "tether-bench-cpdst")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dst)
	os.Chmod(dst, 0o777)
	if u, err := user.Lookup(sshUser); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		os.Chown(dst, uid, -1)
	}
	var last string
	fresh := func() string {
		os.RemoveAll(last) // the previous run's copy: 1 GiB each, a dozen of them
		d, _ := os.MkdirTemp(dst, "run")
		last = d
		os.Chmod(d, 0o777)
		return d
	}

	a, err := b.startAgent("cp", 10)
	if err != nil {
		return err
	}
	sess, err := b.newSessions(a, 1)
	if err != nil {
		return err
	}
	ctx := context.Background()
	mib := float64(size) / (1 << 20)
	label := fmt.Sprintf("%d MiB", size>>20)
	mibs := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = mib / d.Seconds()
		}
		return out
	}
	fps := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = nFiles / d.Seconds()
		}
		return out
	}
	// The tools take turns in every repetition, so that load from other
	// work on the machine falls on all of them alike and the ratios hold.
	type tool struct {
		name, unit string
		run        func() *exec.Cmd
		rate       func([]time.Duration) []float64
		ds         []time.Duration
		errs       int
	}
	tools := []*tool{
		{name: "tether cp " + label + " to a session", unit: "MiB/s", rate: mibs,
			run: func() *exec.Cmd { return b.tetherCmd(ctx, "cp", big, sess[0]+":"+fresh()+"/") }},
		{name: "tether cp -r 2,000 small files to a session", unit: "files/s", rate: fps,
			run: func() *exec.Cmd { return b.tetherCmd(ctx, "cp", "-r", tree, sess[0]+":"+fresh()+"/") }},
	}
	pull := &tool{name: "tether cp " + label + " from a session", unit: "MiB/s", rate: mibs,
		run: func() *exec.Cmd { return b.tetherCmd(ctx, "cp", sess[0]+":"+big, fresh()+"/") }}
	tools = append(tools, pull)
	if sshd != nil {
		scp := func(args ...string) *exec.Cmd {
			base := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + sshd.knownHosts, "-o", "StrictHostKeyChecking=no",
				"-o", "HostKeyAlias=benchsshd", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
				"-i", sshd.key, "-P", strconv.Itoa(sshd.port), "-c", "aes128-gcm@openssh.com"}
			cmd := exec.CommandContext(ctx, "scp", append(base, args...)...)
			cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + sshd.dir}
			return cmd
		}
		at := sshUser + "@127.0.0.1:"
		tools = append(tools,
			&tool{name: "scp " + label + ", aes128-gcm@openssh.com", unit: "MiB/s", rate: mibs,
				run: func() *exec.Cmd { return scp(big, at+fresh()+"/") }},
			&tool{name: "scp -r 2,000 small files, aes128-gcm@openssh.com", unit: "files/s", rate: fps,
				run: func() *exec.Cmd { return scp("-r", tree, at+fresh()+"/") }},
			&tool{name: "scp " + label + " from the host, aes128-gcm@openssh.com", unit: "MiB/s", rate: mibs,
				run: func() *exec.Cmd { return scp(at+big, fresh()+"/") }})
		if _, err := exec.LookPath("rsync"); err == nil {
			sa := sshd.sshArgs("-c", "aes128-gcm@openssh.com")
			ssh := "ssh " + shellJoin(sa[:len(sa)-1]) // without the host: rsync adds it
			tools = append(tools, &tool{name: "rsync -a 2,000 small files over ssh, aes128-gcm (noted)", unit: "files/s", rate: fps,
				run: func() *exec.Cmd {
					cmd := exec.CommandContext(ctx, "rsync", "-a", "-e", ssh, tree, "127.0.0.1:"+fresh()+"/")
					cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + sshd.dir}
					return cmd
				}})
		} else {
			r.note("cp: no rsync on this machine; its row is left out")
		}
	}
	for i := 0; i < cfg.tputReps; i++ {
		for _, t := range tools {
			ds, errs := repeat(r, t.name, 1, func() (time.Duration, error) { return timeRun(t.run()) })
			t.ds, t.errs = append(t.ds, ds...), t.errs+errs
		}
	}
	rows := map[string]*row{}
	for _, t := range tools {
		x := r.add(newRow(fig, t.name, t.unit, t.rate(t.ds)))
		x.Errors = t.errs
		rows[t.name] = x
	}
	if sshd != nil {
		r.ratio(rows[tools[0].name], tools[3].name)
		r.ratio(rows[tools[1].name], tools[4].name)
		r.ratio(rows[pull.name], tools[5].name)
	}
	a.stop()
	return nil
}

func shellJoin(args []string) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += " "
		}
		s += strconv.Quote(a)
	}
	return s
}
