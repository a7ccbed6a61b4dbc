package runspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
)

// execHandler runs external programs (and the runspace's own builtins,
// which the call handler renamed). It replaces interp.DefaultExecHandler:
// the runspace needs its own process groups, hooks and stream handling.
func (r *Runspace) execHandler(ctx context.Context, args []string) error {
	switch args[0] {
	case umaskCmd:
		return r.builtinUmask(ctx, args[1:])
	case declareCmd:
		return r.builtinDeclare(ctx, args[1:])
	case externalCmd:
		args = args[1:]
	}
	hc := interp.HandlerCtx(ctx)
	path, status := lookPath(hc, args[0])
	if status != 0 {
		return interp.ExitStatus(status)
	}
	return r.runProcess(ctx, hc, path, args)
}

// lookPath finds the program like bash does, printing bash's messages
// (with status 127 for a missing program, 126 for one that can't run).
func lookPath(hc interp.HandlerContext, name string) (string, uint8) {
	if !strings.Contains(name, "/") {
		path, err := interp.LookPathDir(hc.Dir, hc.Env, name)
		if err != nil {
			fmt.Fprintf(hc.Stderr, "%s%s: command not found\n", shellPrefix(hc), name)
			return "", 127
		}
		return path, 0
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(hc.Dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(hc.Stderr, "%s%s: No such file or directory\n", shellPrefix(hc), name)
		return "", 127
	case err != nil:
		fmt.Fprintf(hc.Stderr, "%s%s: %v\n", shellPrefix(hc), name, errnoText(err))
		return "", 126
	case fi.IsDir():
		fmt.Fprintf(hc.Stderr, "%s%s: Is a directory\n", shellPrefix(hc), name)
		return "", 126
	}
	return path, 0
}

// shellPrefix starts the shell's own messages as bash -c does ("bash: line
// 1: x: command not found"), so that they do not look like the tether
// client's ("tether: ..."), which the user reads in the same terminal.
func shellPrefix(hc interp.HandlerContext) string {
	if hc.Pos.IsValid() {
		return fmt.Sprintf("bash: line %d: ", hc.Pos.Line())
	}
	return "bash: "
}

// errnoText returns an error's errno text the way bash prints it
// ("Permission denied"), falling back to the error itself.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// runProcess starts path in the command's process group, waits for it and
// maps its end to a bash exit status.
func (r *Runspace) runProcess(ctx context.Context, hc interp.HandlerContext, path string, args []string) error {
	j := jobFrom(ctx)
	if j == nil {
		return errors.New("runspace: exec handler called outside of Run")
	}

	var stdin *os.File
	if f, ok := hc.Stdin.(*os.File); ok {
		stdin = f
	}
	stdout, stderr, outs, err := childOutputs(hc.Stdout, hc.Stderr)
	if err != nil {
		return err
	}
	env := execEnv(hc.Env)

	var cmd *exec.Cmd
	startFn := func(pgid int) (int, error) {
		var err error
		for delay := time.Millisecond; ; delay *= 2 {
			cmd = &exec.Cmd{
				Path:        path,
				Args:        args,
				Env:         env,
				Dir:         hc.Dir,
				SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pgid: pgid},
			}
			// Leave nil files as nil interfaces: os/exec then uses
			// /dev/null.
			if stdin != nil {
				cmd.Stdin = stdin
			}
			if stdout != nil {
				cmd.Stdout = stdout
			}
			if stderr != nil {
				cmd.Stderr = stderr
			}
			if r.opts.BeforeStart != nil {
				r.opts.BeforeStart(cmd)
			}
			err = r.startProcess(cmd)
			// A concurrently forked process may briefly hold a write fd
			// on a freshly written program (go.dev/issue/22315).
			if !errors.Is(err, syscall.ETXTBSY) || delay > 300*time.Millisecond {
				break
			}
			time.Sleep(delay)
		}
		if err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	}
	g, leader, err := j.start(startFn)
	if err != nil {
		outs.abort()
		if j.ctx.Err() != nil {
			return interp.ExitStatus(128 + syscall.SIGINT)
		}
		return r.startFailed(ctx, hc, path, args, err)
	}
	outs.started()

	if r.opts.AfterStart != nil {
		if err := r.opts.AfterStart(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if leader {
				j.leaderDone(g)
			}
			outs.wait(j.ctx, j.grace)
			fmt.Fprintf(hc.Stderr, "tether: %s: %v\n", args[0], err)
			return interp.ExitStatus(1)
		}
	}

	err = cmd.Wait()
	if leader {
		j.leaderDone(g)
	}
	if j.jobControl && killedBy(cmd.ProcessState, syscall.SIGINT) {
		// Before the interpreter goes on to the next statement.
		j.abandon()
	}
	j.exited(cmd.ProcessState != nil && !cmd.ProcessState.Exited())
	outs.wait(j.ctx, j.grace)
	return waitStatus(hc, args[0], err)
}

// killedBy reports whether a process died of sig.
func killedBy(ps *os.ProcessState, sig syscall.Signal) bool {
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// waitStatus maps the end of a process to a bash exit status.
func waitStatus(hc interp.HandlerContext, name string, err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return interp.ExitStatus(128 + int(ws.Signal()))
		}
		return interp.ExitStatus(ee.ExitCode())
	}
	fmt.Fprintf(hc.Stderr, "%s%s: %v\n", shellPrefix(hc), name, err)
	return interp.ExitStatus(1)
}

// startFailed reports why a found program could not be started, like bash.
func (r *Runspace) startFailed(ctx context.Context, hc interp.HandlerContext, path string, args []string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		// Like other shells, run a file that the kernel refuses to
		// execute (a script without a shebang line) with a shell, unless
		// it looks binary.
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			fmt.Fprintf(hc.Stderr, "%s%s: %s\n", shellPrefix(hc), args[0], errnoText(rerr))
			return interp.ExitStatus(126)
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		if bytes.IndexByte(line, 0) >= 0 {
			fmt.Fprintf(hc.Stderr, "%s%s: cannot execute binary file\n", shellPrefix(hc), args[0])
			return interp.ExitStatus(126)
		}
		sh, lerr := exec.LookPath("/bin/sh")
		if lerr != nil {
			fmt.Fprintf(hc.Stderr, "%s%s: %s\n", shellPrefix(hc), args[0], errnoText(err))
			return interp.ExitStatus(126)
		}
		return r.runProcess(ctx, hc, sh, append([]string{"sh", path}, args[1:]...))
	case errors.Is(err, syscall.ENOENT):
		// The program exists (we found it), so its interpreter does not.
		fmt.Fprintf(hc.Stderr, "%s%s: bad interpreter: No such file or directory\n", shellPrefix(hc), args[0])
		return interp.ExitStatus(126)
	case errors.Is(err, syscall.EACCES):
		fmt.Fprintf(hc.Stderr, "%s%s: Permission denied\n", shellPrefix(hc), args[0])
		return interp.ExitStatus(126)
	}
	fmt.Fprintf(hc.Stderr, "%s%s: %s\n", shellPrefix(hc), args[0], errnoText(err))
	return interp.ExitStatus(126)
}

// execEnv returns the exported string variables of env as KEY=VALUE pairs,
// like interp's unexported execEnv: a variable unset in an inner scope
// hides an outer one, and a later occurrence of a name wins.
func execEnv(env expand.Environ) []string {
	vars := make(map[string]expand.Variable, 64)
	for name, vr := range env.Each {
		vars[name] = vr
	}
	list := make([]string, 0, len(vars))
	for name, vr := range vars {
		if vr.IsSet() && vr.Exported && vr.Kind == expand.String {
			list = append(list, name+"="+vr.String())
		}
	}
	slices.Sort(list)
	return list
}

// childOutputs returns the stdout and stderr to hand to a child process.
// Files are passed as they are; io.Discard becomes /dev/null; any other
// writer gets an OS pipe whose read end a goroutine copies into it (one
// shared pipe when both are the same writer, preserving their order).
func childOutputs(out, errw io.Writer) (stdout, stderr *os.File, outs copiers, err error) {
	stdout, c1, err := childOutput(out)
	if err != nil {
		return nil, nil, nil, err
	}
	outs = append(outs, c1...)
	if c1 != nil && sameWriter(out, errw) {
		return stdout, stdout, outs, nil
	}
	stderr, c2, err := childOutput(errw)
	if err != nil {
		outs.abort()
		return nil, nil, nil, err
	}
	return stdout, stderr, append(outs, c2...), nil
}

func childOutput(w io.Writer) (*os.File, []*copier, error) {
	switch w := w.(type) {
	case nil:
		return nil, nil, nil
	case *os.File:
		return w, nil, nil
	}
	if w == io.Discard {
		return nil, nil, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	c := &copier{r: pr, w: pw, done: make(chan struct{})}
	go c.copy(w)
	return pw, []*copier{c}, nil
}

func sameWriter(a, b io.Writer) bool {
	ta := reflect.TypeOf(a)
	return ta != nil && ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// A copier copies a child's output pipe into a writer.
type copier struct {
	r, w *os.File
	done chan struct{}
}

func (c *copier) copy(w io.Writer) {
	defer close(c.done)
	buf := make([]byte, 32*1024)
	var werr error
	for {
		n, err := c.r.Read(buf)
		if n > 0 && werr == nil {
			// After a write error keep draining, so that the child
			// never blocks on a full pipe.
			_, werr = w.Write(buf[:n])
		}
		if err != nil {
			return
		}
		if n == len(buf) && n < BulkPipeBytes {
			if pw, ok := AsPipeWriter(c.r, w); ok && werr == nil {
				_, err := CopyPipeInto(c.r, pw)
				if err == nil {
					return // the end, or a read failed
				}
				werr = err // drain, below
			}
			buf = BulkPipe(c.r) // bulk output: see BulkPipe
		}
	}
}

type copiers []*copier

// started closes the parent's copies of the write ends, once the child
// holds them.
func (cs copiers) started() {
	for _, c := range cs {
		c.w.Close()
	}
}

// abort releases the pipes of a child that did not start.
func (cs copiers) abort() {
	for _, c := range cs {
		c.w.Close()
		<-c.done
		c.r.Close()
	}
}

// wait waits until the child's output has been copied, that is until every
// process holding the pipe (grandchildren too) closed it, as bash over ssh
// would. After an interrupt it gives up grace after the child ended.
func (cs copiers) wait(ctx context.Context, grace time.Duration) {
	for _, c := range cs {
		select {
		case <-c.done:
		case <-ctx.Done():
			t := time.NewTimer(grace)
			select {
			case <-c.done:
			case <-t.C:
			}
			t.Stop()
		}
		c.r.Close()
	}
}

// stdio holds one Run's streams as the interpreter sees them.
type stdio struct {
	stdin          *os.File
	stdout, stderr io.Writer
	closeStdin     *os.File // our pipe's read end, if any
}

func newStdio(s Streams) (*stdio, error) {
	st := &stdio{}
	switch in := s.Stdin.(type) {
	case nil:
		// No stdin reads as empty, like </dev/null. One shared handle:
		// a pipe and a copying goroutine per command would cost more
		// than a short command itself.
		null, err := devNull()
		if err != nil {
			return nil, err
		}
		st.stdin = null
	case *os.File:
		st.stdin = in
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		go func() {
			_ = CopyToPipe(pw, in)
			pw.Close()
		}()
		st.stdin, st.closeStdin = pr, pr
	}
	// Builtins and background statements may write concurrently; non-file
	// writers are serialized (one lock for both, as they may be the same).
	var mu sync.Mutex
	wrap := func(w io.Writer) io.Writer {
		switch w.(type) {
		case nil:
			return io.Discard
		case *os.File:
			return w
		}
		if w == io.Discard {
			return w
		}
		if pw, ok := w.(PipeWriter); ok {
			return &lockedPipeWriter{lockedWriter{mu: &mu, w: w}, pw}
		}
		return &lockedWriter{mu: &mu, w: w}
	}
	st.stdout = wrap(s.Stdout)
	if sameWriter(s.Stdout, s.Stderr) {
		st.stderr = st.stdout
	} else {
		st.stderr = wrap(s.Stderr)
	}
	return st, nil
}

func (st *stdio) close() {
	if st.closeStdin != nil {
		// The copying goroutine ends with EPIPE at its next write.
		st.closeStdin.Close()
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lockedPipeWriter keeps a PipeWriter one for the copiers (bulkpipe.go).
// WriteFrom does its own locking (PipeWriter's contract): holding the lock
// through it would hold the other stream and the builtins up for the
// writer's waits (the output sink pauses after a small read).
type lockedPipeWriter struct {
	lockedWriter
	pw PipeWriter
}

func (l *lockedPipeWriter) WriteFrom(read func(p []byte) int) (int, error) {
	return l.pw.WriteFrom(read)
}

// devNull is a read handle on /dev/null shared by every Run without stdin.
var devNull = sync.OnceValues(func() (*os.File, error) {
	return os.Open(os.DevNull)
})

// startProcess starts cmd with the runspace's umask, through Options.Start
// when there is one.
func (r *Runspace) startProcess(cmd *exec.Cmd) error {
	start := func() error { return r.withUmask(cmd.Start) }
	if r.opts.Start != nil {
		return r.opts.Start(cmd, start)
	}
	return start()
}
