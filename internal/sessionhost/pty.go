package sessionhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/journal"
	"github.com/tether-sh/tether/internal/runspace"
)

// Interactive commands (a run request with a TTY, from `tether enter` on a
// terminal) run on a pseudo-terminal of their own, as with ssh -t.
//
// The session host is a session leader without a controlling terminal (the
// agent starts it with setsid). For a TTY command it opens a pty pair and
// makes the slave its controlling terminal (TIOCSCTTY), so that every
// process the command starts inherits it. Each external process is placed
// in the foreground (SysProcAttr.Foreground, set by beforeStart) as it
// starts in the command's process group, so the line discipline sends
// Ctrl-C, Ctrl-\ and window size changes to the program the user sees.
// The master's output is journalled as stdout; the client's stdin frames
// are written to the master. When the command ends the host closes the
// pair: the hangup detaches the terminal from the session, ready for the
// next one.
//
// Without a controlling terminal (the host is not a session leader, as in
// in-process tests) the command still gets the pty as its standard streams,
// only without job-control signals from the keyboard.

// ptyState is the pseudo-terminal of one running TTY command.
type ptyState struct {
	h        *Host
	master   *os.File // pollable: reads end when it is closed
	slave    *os.File
	slaveFd  int
	ctty     bool // the slave is the session host's controlling terminal
	term     string
	out      io.Writer
	readDone chan struct{}
	inDone   chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

// ttys maps a host to its running TTY command's terminal. It is kept apart
// from Host.mu because beforeStart runs inside the runspace's job lock.
var ttys = struct {
	sync.Mutex
	m map[*Host]*ptyState
}{m: map[*Host]*ptyState{}}

func activePTY(h *Host) *ptyState {
	ttys.Lock()
	defer ttys.Unlock()
	return ttys.m[h]
}

// beforeStart is the runspace's BeforeStart hook: processes of a TTY
// command get the client's TERM and the terminal's foreground.
func (h *Host) beforeStart(cmd *exec.Cmd) {
	p := activePTY(h)
	if p == nil {
		return
	}
	if p.term != "" {
		cmd.Env = setEnv(cmd.Env, "TERM", p.term)
	}
	if p.ctty {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		}
		// Foreground uses Ctty as a descriptor of this process, and
		// the child calls TIOCSPGRP with signals still blocked, so a
		// new background group may take the terminal.
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = p.slaveFd
	}
}

func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// resizePTY sets the running TTY command's window size; the kernel sends
// SIGWINCH to the terminal's foreground process group.
func (h *Host) resizePTY(rows, cols int) {
	p := activePTY(h)
	if p == nil || rows <= 0 || cols <= 0 {
		return
	}
	if err := setWinsize(p.slaveFd, rows, cols); err != nil {
		h.log.Warn("cannot resize the terminal", "err", err)
	}
}

func setWinsize(fd, rows, cols int) error {
	return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(min(rows, 65535)), Col: uint16(min(cols, 65535))})
}

// openPTY opens a pseudo-terminal pair. The master stays non-blocking (in
// Go's poller) so that closing it ends a pending read.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	var n uint32
	var ierr error
	cerr := rc.Control(func(fd uintptr) {
		n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		if ierr == nil {
			ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0)
		}
	})
	if err = errors.Join(cerr, ierr); err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

var ttySignalsOnce sync.Once

// catchTTYSignals keeps keyboard signals from killing the session host
// while it is itself the terminal's foreground process group (a command
// made only of builtins, or before its first program starts): Ctrl-C then
// interrupts the running command, Ctrl-\ is ignored. Catching (unlike
// ignoring) is not inherited by the programs the session runs.
func catchTTYSignals() {
	ttySignalsOnce.Do(func() {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGQUIT)
		go func() {
			for sig := range ch {
				if sig != syscall.SIGINT {
					continue
				}
				ttys.Lock()
				var hs []*Host
				for h := range ttys.m {
					hs = append(hs, h)
				}
				ttys.Unlock()
				for _, h := range hs {
					h.rs.Interrupt()
				}
			}
		}()
	})
}

// startTTY puts command c on a new pseudo-terminal. It returns the streams
// to run the command with and a function to call once the command has
// finished, which journals the terminal's remaining output and closes it.
// If no terminal can be had, the command runs with the plain streams.
func (h *Host) startTTY(ctx context.Context, c *command, plain runspace.Streams) (runspace.Streams, func()) {
	master, slave, err := openPTY()
	if err != nil {
		h.log.Warn("cannot open a pseudo-terminal; running without one", "err", err)
		return plain, nil
	}
	p := &ptyState{
		h: h, master: master, slave: slave, slaveFd: int(slave.Fd()),
		term:     c.tty.Term,
		out:      &journalWriter{ctx: ctx, j: h.j, kind: journal.KindStdout, cmd: c.id},
		readDone: make(chan struct{}),
		inDone:   make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if c.tty.Rows > 0 && c.tty.Cols > 0 {
		setWinsize(p.slaveFd, c.tty.Rows, c.tty.Cols)
	}
	if err := unix.IoctlSetInt(p.slaveFd, unix.TIOCSCTTY, 0); err != nil {
		h.log.Warn("cannot make the pseudo-terminal the controlling terminal; no job-control keys", "err", err)
	} else {
		// Before any key can reach the terminal (copyIn).
		catchTTYSignals()
		p.ctty = true
		if fg, ok := h.rs.(interface{ Pgid() int }); ok {
			// bash forks the programs itself, in its own group: that group
			// gets the terminal (the builtin shell hands it to each program
			// as it starts, beforeStart).
			if pg := fg.Pgid(); pg > 0 {
				if err := unix.IoctlSetPointerInt(p.slaveFd, unix.TIOCSPGRP, pg); err != nil {
					h.log.Warn("cannot give the terminal to bash", "err", err)
				}
			}
		}
	}
	go p.copyOut()
	if c.stdin != nil {
		go p.copyIn(c.stdin)
	} else {
		close(p.inDone)
	}
	ttys.Lock()
	ttys.m[h] = p
	ttys.Unlock()
	if validTerm(p.term) {
		// beforeStart gives TERM to the programs; the shell's own $TERM
		// is a variable of the runspace, set here (exported, so it stays
		// for the session as an export would), keeping $? as it was.
		if _, err := h.rs.Run(ctx, `builtin eval "export TERM=`+p.term+`; (exit $?)"`, runspace.Streams{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
			h.log.Warn("cannot set TERM in the shell", "err", err)
		}
	}
	return runspace.Streams{Stdin: slave, Stdout: slave, Stderr: slave}, p.finish
}

// validTerm reports whether a client's TERM is a terminal type name, safe
// to write into a shell command as it is.
func validTerm(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
			return false
		}
	}
	return true
}

// copyOut journals what the command writes to the terminal.
func (p *ptyState) copyOut() {
	defer close(p.readDone)
	buf := make([]byte, 32<<10)
	var werr error
	for {
		n, err := p.master.Read(buf)
		if n > 0 && werr == nil {
			// After a write error keep draining, so that the
			// command never blocks on a full terminal.
			_, werr = p.out.Write(buf[:n])
		}
		if err != nil {
			// EIO: every slave descriptor is closed.
			return
		}
	}
}

// copyIn types the client's stdin into the terminal.
func (p *ptyState) copyIn(in io.Reader) {
	defer close(p.inDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			p.keys(buf[:n])
			if _, werr := p.master.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// keys watches the interrupt and suspend keys going to the terminal. The
// line discipline turns them into SIGINT/SIGTSTP for the foreground group;
// the host adds what a shell with job control would do:
//   - when Ctrl-C killed the foreground program, the rest of the command
//     is not run (as bash abandons a list whose program died of SIGINT);
//   - a session has no job control to resume a stopped program, so one
//     that Ctrl-Z stopped is continued at once rather than hanging the
//     session.
func (p *ptyState) keys(b []byte) {
	if !p.ctty {
		return
	}
	t, err := unix.IoctlGetTermios(p.slaveFd, unix.TCGETS)
	if err != nil || t.Lflag&unix.ISIG == 0 {
		return
	}
	intr, susp := t.Cc[unix.VINTR], t.Cc[unix.VSUSP]
	hitIntr := intr != 0 && bytes.IndexByte(b, intr) >= 0
	hitSusp := susp != 0 && bytes.IndexByte(b, susp) >= 0
	if !hitIntr && !hitSusp {
		return
	}
	fg, err := unix.IoctlGetInt(p.slaveFd, unix.TIOCGPGRP)
	if err != nil || fg <= 0 || fg == syscall.Getpgrp() {
		return // the host itself is in the foreground: catchTTYSignals
	}
	if hitIntr && syscall.Kill(-fg, 0) == syscall.ESRCH {
		// The foreground program has ended and the interpreter runs
		// builtins (a loop): nobody gets the SIGINT, so interrupt.
		p.h.rs.Interrupt()
		return
	}
	if hitIntr {
		go p.abandonIfKilled(fg)
	}
	if hitSusp {
		go p.continueIfStopped(fg)
	}
}

func (p *ptyState) abandonIfKilled(pgid int) {
	// Best effort: the interpreter may already have run a quick
	// builtin after the program died.
	start := time.Now()
	for time.Since(start) < time.Second {
		every := 2 * time.Millisecond
		if time.Since(start) > 100*time.Millisecond {
			every = 20 * time.Millisecond
		}
		select {
		case <-p.stopped:
			return
		case <-time.After(every):
		}
		if syscall.Kill(-pgid, 0) == syscall.ESRCH {
			p.h.rs.Interrupt()
			return
		}
	}
}

func (p *ptyState) continueIfStopped(pgid int) {
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case <-p.stopped:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if processStopped(pgid) {
			syscall.Kill(-pgid, syscall.SIGCONT)
			// Written to the terminal, so it comes in order with the
			// program's output.
			io.WriteString(p.slave, "\r\ntether: no job control in a session: the program cannot be suspended, so it goes on\r\n")
			return
		}
	}
}

// processStopped reports whether process pid is stopped (state T).
func processStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'T'
}

// finish is called when the command has ended: it journals what is still
// in the terminal and closes it, which also detaches it from the session.
func (p *ptyState) finish() {
	p.stopOnce.Do(func() { close(p.stopped) })
	ttys.Lock()
	if ttys.m[p.h] == p {
		delete(ttys.m, p.h)
	}
	ttys.Unlock()
	p.slave.Close()
	// With every slave descriptor closed, the master reads what is left
	// and then EIO. A background program still holding the terminal must
	// not hold up the command's end for long.
	select {
	case <-p.readDone:
	case <-time.After(300 * time.Millisecond):
	}
	p.master.Close()
	<-p.readDone
	<-p.inDone
}
