package bash

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/shquote"
)

// proc is one bash process.
type proc struct {
	cmd     *exec.Cmd
	pid     int
	ctl     *os.File    // bash's stdin: one line per command
	reports chan report // "D SEQ STATUS" lines; closed at EOF (bash ended)
	exited  chan struct{}
	state   *os.ProcessState // set before exited is closed

	mu     sync.Mutex
	onOpen func(seq int) // "O SEQ": bash opened command seq's streams
}

// report is "D SEQ STATUS [k]": k when bash took no snapshot, the last
// one still holding the state (a stateless command).
type report struct {
	seq, status int
	kept        bool
}

func (p *proc) alive() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// startLocked starts a bash process and runs the init script in it.
func (s *Shell) startLocked(ctx context.Context) error {
	q := func(n string) string { return shquote.Bash(s.sf.path(n)) }
	if err := s.sf.write("init", fmt.Appendf(nil, initScript, q("opts"), q("snap0"), q("snap1"), q("exit"))); err != nil {
		return fmt.Errorf("bash: the init file: %w", err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("bash: %w", err)
	}
	doneR, doneW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return fmt.Errorf("bash: %w", err)
	}
	cmd := exec.Command(s.opts.Bash, "--noprofile", "--norc", "--noediting", "+o", "history", "-i")
	cmd.Stdin = ctlR
	cmd.ExtraFiles = []*os.File{doneW} // fd 3, moved to 63 by the init script
	cmd.Env = s.opts.Env
	cmd.Dir = s.opts.Dir
	// Its own process group: Interrupt signals the group; jobs started
	// with & ignore SIGINT there, as bash without job control makes them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.opts.BeforeStart != nil {
		s.opts.BeforeStart(cmd)
	}
	err = cmd.Start()
	ctlR.Close()
	doneW.Close()
	if err != nil {
		ctlW.Close()
		doneR.Close()
		return fmt.Errorf("bash: start %s: %w", s.opts.Bash, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, ctl: ctlW, reports: make(chan report, 4), exited: make(chan struct{})}
	go p.readReports(doneR)
	s.p = p
	if s.opts.AfterStart != nil {
		if err := s.opts.AfterStart(p.pid); err != nil {
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			<-p.exited
			return fmt.Errorf("bash: after start: %w", err)
		}
	}
	s.seq++
	line := fmt.Sprintf(". %s; __tether_s=%d; __tether_done\n", shquote.Bash(s.sf.path("init")), s.seq)
	if _, err := io.WriteString(ctlW, line); err != nil {
		return fmt.Errorf("bash: send the init line: %w", err)
	}
	// A bash that does not come up in 10s is broken (the profile runs later,
	// with its own bound).
	t := time.AfterFunc(10*time.Second, func() { _ = syscall.Kill(-p.pid, syscall.SIGKILL) })
	defer t.Stop()
	if _, died := p.waitReport(s.seq); died {
		<-p.exited
		return fmt.Errorf("bash: %s did not start: %v", s.opts.Bash, p.state)
	}
	s.snapSeq, s.sameUntil = s.seq, s.seq
	s.last = 0
	return nil
}

func (p *proc) readReports(r *os.File) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "O" {
			if seq, err := strconv.Atoi(f[1]); err == nil {
				p.mu.Lock()
				if p.onOpen != nil {
					p.onOpen(seq)
				}
				p.mu.Unlock()
			}
			continue
		}
		if (len(f) != 3 && len(f) != 4) || f[0] != "D" {
			continue
		}
		seq, e1 := strconv.Atoi(f[1])
		st, e2 := strconv.Atoi(f[2])
		if e1 == nil && e2 == nil {
			p.reports <- report{seq, st, len(f) == 4 && f[3] == "k"}
		}
	}
	r.Close()
	close(p.reports)
	_ = p.cmd.Wait()
	p.state = p.cmd.ProcessState
	p.ctl.Close()
	close(p.exited)
}

// waitReport waits for command seq's report; died means bash ended first.
func (p *proc) waitReport(seq int) (r report, died bool) {
	for r := range p.reports {
		if r.seq == seq {
			return r, false
		}
	}
	return report{}, true
}

// foreground lists the processes of bash's group but bash that are not
// background jobs. bash without job control starts `&` jobs with SIGINT
// and SIGQUIT ignored; a program that ignores SIGINT itself rarely ignores
// SIGQUIT too, so that pair tells the two apart.
func (p *proc) foreground() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == p.pid {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parens.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[2] != strconv.Itoa(p.pid) {
			continue
		}
		if background(e.Name()) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// missedSIGINT: a process alive after the interrupt whose SIGINT is at
// its default action and not blocked (so it did not handle or ignore it):
// it was being forked when the signal came, and ran its program without
// seeing it (`echo go; sleep 100` interrupted right after "go").
func missedSIGINT(pid int) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	const sigint = 1 << (syscall.SIGINT - 1)
	for _, l := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "SigBlk" && k != "SigIgn" && k != "SigCgt") {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil || m&sigint != 0 {
			return false
		}
	}
	return true
}

func background(pid string) bool {
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			const intQuit = 1<<(syscall.SIGINT-1) | 1<<(syscall.SIGQUIT-1)
			return err == nil && m&intQuit == intQuit
		}
	}
	return false
}

// running is the command in progress: its interrupt state.
type running struct {
	seq   int
	p     *proc
	grace time.Duration

	once sync.Once
	mu   sync.Mutex
	done chan struct{}
	fin  bool
}

// interrupt: SIGINT to bash's group (bash aborts the line, foreground
// programs die, & jobs ignore it). After the grace period, SIGKILL to the
// foreground programs still there, again every 50ms (a loop may start more);
// if the command still has not ended 5 s later (bash itself ignores SIGINT,
// a `trap ” INT`), bash is killed and restarted with the last state.
// abortSignal is SIGRTMAX-1 (glibc's SIGRTMAX is 64): the init script traps
// it to interrupt bash once a program that ignored SIGINT was killed.
const abortSignal = syscall.Signal(63)

func (c *running) interrupt() {
	c.once.Do(func() {
		_ = syscall.Kill(-c.p.pid, syscall.SIGINT)
		go c.escalate()
	})
}

func (c *running) escalate() {
	// A program forked at the instant of the SIGINT can miss it; it gets
	// one more, which a program that handles SIGINT (a second Ctrl-C may
	// mean "force" to it) never does.
	for _, d := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
		select {
		case <-c.done:
			return
		case <-time.After(d):
		}
		c.mu.Lock()
		if !c.fin {
			for _, pid := range c.p.foreground() {
				if missedSIGINT(pid) {
					_ = syscall.Kill(pid, syscall.SIGINT)
				}
			}
		}
		c.mu.Unlock()
	}
	select {
	case <-c.done:
		return
	case <-time.After(c.grace):
	}
	// The trap of abortSignal ends the line once the killed program is gone.
	_ = syscall.Kill(c.p.pid, abortSignal)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if !c.fin {
			for _, pid := range c.p.foreground() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		c.mu.Unlock()
		select {
		case <-c.done:
			return
		case <-deadline:
			_ = syscall.Kill(c.p.pid, syscall.SIGKILL)
			return
		case <-tick.C:
		}
	}
}

func (c *running) finish() {
	c.mu.Lock()
	c.fin = true
	c.mu.Unlock()
	close(c.done)
}
