package agent

import (
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/wire"
)

// ServeStdio serves one client over c, the stdin and stdout of
// `tether serve --stdio` that the user's OpenSSH started: the same SSH
// server protocol and operations as over TCP, in user mode. OpenSSH has
// already authenticated the user, so the inner SSH layer asks for no key
// (its "none" method is the only one offered) and serves only the user
// the process runs as; nothing else can reach c.
//
// Session hosts are found and started as by the TCP agent, under the
// user's state directory, and they outlive this process: it ends when c
// does, letting go of its sessions as a stopping agent does.
func (a *Agent) ServeStdio(ctx context.Context, c net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.Close()
	stdioMode.Store(true)
	// One P, as OpenSSH's sshd and ssh, the two ends of its pipes, are
	// one thread each: with two, every packet handed from the SSH reader
	// to a channel's goroutine woke a second thread (#15: a third less CPU
	// per command in a fan-out). GOMAXPROCS in the environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// No start-up discovery: a command names its one session, which
	// lookup finds by name in the state directory (rescanMissing); list,
	// new and a settings change look at all of them. Attaching every
	// session host of the user at each ssh connection cost one watch per
	// session before the first answer.
	a.skipDiscovery()
	cancelSub := a.store.Subscribe(func(config.Settings) {
		a.rescanMissing(a.self.Username, "") // new limits reach sessions not looked at yet
		a.pushLimits()
	})
	defer cancelSub()
	go a.store.Watch(ctx)

	cfg := *a.server
	cfg.PublicKeyCallback = nil
	cfg.BannerCallback = nil
	cfg.NoClientAuth = true
	cfg.NoClientAuthCallback = func(ssh.ConnMetadata) (*ssh.Permissions, error) {
		return &ssh.Permissions{Extensions: map[string]string{"user": a.self.Username, "admin": "1"}}, nil
	}
	// What a login profile printed before us may end without a newline:
	// the client skips everything up to this line (wire.StdioReady).
	if _, err := io.WriteString(c, "\n"+wire.StdioReady+"\n"); err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(a.opts.HandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, &cfg)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	log := a.log.With("user", a.self.Username, "remote", "stdio")
	log.Debug("stdio connection opened")
	go func() {
		for r := range reqs {
			if r.WantReply {
				r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	id := identity{user: a.self.Username, remote: stdioRemote(), admin: true}
	for nc := range chans {
		if nc.ChannelType() != ChannelType {
			nc.Reject(ssh.UnknownChannelType, "tether agents only speak "+ChannelType+"; use the tether client")
			continue
		}
		a.acceptChannel(ctx, nc, id, nil, func() {})
	}
	log.Debug("stdio connection closed")
	a.closeWatches()
	return nil
}

// stdioRemote names the client for the logs: sshd's SSH_CLIENT
// ("addr port localport"), which OpenSSH sets for the command.
func stdioRemote() string {
	if s := os.Getenv("SSH_CLIENT"); s != "" {
		return "ssh:" + s
	}
	return "stdio"
}

// StdioConn is this process's stdin and stdout as a net.Conn.
//
// When they are pipes or sockets (what sshd gives a command) they are
// switched to non-blocking mode and served by Go's poller: a blocking
// read of stdin parks a thread in the kernel, the runtime hands its P to
// another thread while it waits, and each packet then costs thread
// wake-ups and keeps the runtime's monitor polling at its fastest rate
// (#15: with blocking pipes a stdio agent ran 19 threads for one
// connection, and futex and nanosleep calls were most of its system
// calls). A terminal or a file stays as it is: its mode is shared with
// whatever else uses it.
func StdioConn() net.Conn { return stdioConnOf(0, 1, os.Stdin, os.Stdout) }

func stdioConnOf(in, out int, stdin, stdout *os.File) *stdioConn {
	return &stdioConn{r: pollable(in, "stdin", stdin), w: pollable(out, "stdout", stdout)}
}

// pollable returns fd as a file in Go's poller when it is a pipe or a
// socket, else f (the blocking standard stream).
func pollable(fd int, name string, f *os.File) *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return f
	}
	if m := st.Mode & unix.S_IFMT; m != unix.S_IFIFO && m != unix.S_IFSOCK {
		return f
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return f
	}
	return os.NewFile(uintptr(fd), name) // non-blocking: NewFile registers it with the poller
}

type stdioConn struct {
	r, w *os.File
}

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return stdioRemote() }

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *stdioConn) Close() error {
	c.r.Close()
	return c.w.Close()
}
func (c *stdioConn) LocalAddr() net.Addr  { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr { return stdioAddr{} }

// Deadlines work on polled pipes; blocking streams have none (their
// error is ignored: ssh ends the process when its connection goes).
func (c *stdioConn) SetDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	c.w.SetWriteDeadline(t)
	return nil
}
func (c *stdioConn) SetReadDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	return nil
}
func (c *stdioConn) SetWriteDeadline(t time.Time) error {
	c.w.SetWriteDeadline(t)
	return nil
}
