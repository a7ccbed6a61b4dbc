package sshtransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Conn is a remote command's stdin and stdout through ssh, as a net.Conn.
// Closing it closes ssh's stdin (the remote command sees EOF) and ends
// the ssh process.
type Conn struct {
	host   Host
	cmd    *exec.Cmd
	r, w   *os.File // our ends: ssh's stdout, ssh's stdin
	stderr *tail
	exited chan struct{}
	code   int
	once   sync.Once
	remote string // RemoteAddr: the forward's HOST:PORT, or the destination
}

// Start runs command on h through ssh and returns its stdio.
func (o *Options) Start(h Host, command string) (*Conn, error) {
	if err := CheckHost(h); err != nil {
		return nil, err
	}
	return o.start(h, o.Args(h, command))
}

// StartForward connects through h to addr (HOST:PORT, as seen from h)
// with `ssh -W`, and returns the forwarded stream: how a Tether agent
// behind a bastion is reached (ProxyJump, -J).
func (o *Options) StartForward(h Host, addr string) (*Conn, error) {
	if err := CheckHost(h); err != nil {
		return nil, err
	}
	if addr == "" || strings.HasPrefix(addr, "-") {
		return nil, fmt.Errorf("ssh: bad forward address %q", addr)
	}
	c, err := o.start(h, o.ForwardArgs(h, addr))
	if c != nil {
		c.remote = addr
	}
	return c, err
}

func (o *Options) start(h Host, args []string) (*Conn, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ssh: pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("ssh: pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("ssh: pipe: %w", err)
	}
	cmd := exec.Command(o.program(), args...)
	cmd.Env = o.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// Its own process group: a Ctrl-C meant for the command the client
	// forwards must not kill ssh under it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrNoSSH, o.program(), err)
	}
	c := &Conn{host: h, cmd: cmd, r: outR, w: inW, stderr: &tail{max: 16 << 10}, exited: make(chan struct{}), remote: h.String()}
	stderrDone := make(chan struct{})
	go func() {
		// A master that ssh leaves behind holds no copy of this pipe
		// (ControlPersist points its stdio at /dev/null).
		var w io.Writer = c.stderr
		if o.Notify != nil {
			w = io.MultiWriter(c.stderr, &noteWriter{to: o.Notify})
		}
		io.Copy(w, errR)
		errR.Close()
		close(stderrDone)
	}()
	go func() {
		err := cmd.Wait()
		// stderr's last words arrive before or just after the exit.
		select {
		case <-stderrDone:
		case <-time.After(time.Second):
		}
		c.code = 0
		if err != nil {
			c.code = -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				c.code = ee.ExitCode()
			}
		}
		close(c.exited)
	}()
	return c, nil
}

// Read reads the remote command's stdout.
func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write writes to the remote command's stdin.
func (c *Conn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Close ends the remote command's stdin, then ssh: it is given a moment to
// exit on its own (so a master is left in a clean state), then killed.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.r.Close()
		go func() {
			select {
			case <-c.exited:
			case <-time.After(2 * time.Second):
				c.cmd.Process.Kill()
			}
		}()
	})
	return nil
}

// Kill ends the ssh process at once (tests, a stuck connection).
func (c *Conn) Kill() { c.cmd.Process.Kill() }

// Exited is closed when ssh has exited.
func (c *Conn) Exited() <-chan struct{} { return c.exited }

// Wait waits up to d for ssh to exit and returns its status and error
// (nil when it exited 0); ok is false if it is still running.
func (c *Conn) Wait(d time.Duration) (code int, ok bool) {
	select {
	case <-c.exited:
		return c.code, true
	case <-time.After(d):
		return 0, false
	}
}

// Err is what ssh's exit says, once it has exited.
func (c *Conn) Err() *Error {
	select {
	case <-c.exited:
	default:
		return nil
	}
	return Classify(c.host, c.code, c.stderr.String())
}

// Stderr is the end of what ssh (and the remote command) wrote on stderr.
func (c *Conn) Stderr() string { return c.stderr.String() }

// PID is the ssh process's.
func (c *Conn) PID() int { return c.cmd.Process.Pid }

type addr string

func (a addr) Network() string { return "ssh" }
func (a addr) String() string  { return string(a) }

// LocalAddr is a placeholder: the connection is a process's pipes.
func (c *Conn) LocalAddr() net.Addr { return addr("local") }

// RemoteAddr is the destination as written, or for a forward (-W) the
// HOST:PORT it reaches (what a host key check looks up).
func (c *Conn) RemoteAddr() net.Addr { return addr(c.remote) }

// SetDeadline sets both pipes' deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	return c.w.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.r.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

// noteWriter passes on the complete lines that start with NotePrefix.
type noteWriter struct {
	to  io.Writer
	buf []byte
}

func (n *noteWriter) Write(p []byte) (int, error) {
	n.buf = append(n.buf, p...)
	for {
		i := bytes.IndexByte(n.buf, '\n')
		if i < 0 {
			break
		}
		if line := n.buf[:i+1]; bytes.HasPrefix(line, []byte(NotePrefix)) {
			n.to.Write(line)
		}
		n.buf = n.buf[i+1:]
	}
	if len(n.buf) > 4096 {
		n.buf = n.buf[:0] // a line that long is no note
	}
	return len(p), nil
}
