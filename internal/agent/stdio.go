package agent

import (
	"context"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

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
		a.acceptChannel(ctx, nc, id, func() {})
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
func StdioConn() net.Conn { return stdioConn{} }

type stdioConn struct{}

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return stdioRemote() }

func (stdioConn) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdioConn) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdioConn) Close() error {
	os.Stdin.Close()
	return os.Stdout.Close()
}
func (stdioConn) LocalAddr() net.Addr  { return stdioAddr{} }
func (stdioConn) RemoteAddr() net.Addr { return stdioAddr{} }

// Deadlines: the standard streams are blocking descriptors, which have
// none; ssh ends the process when its connection goes.
func (stdioConn) SetDeadline(time.Time) error      { return nil }
func (stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (stdioConn) SetWriteDeadline(time.Time) error { return nil }
