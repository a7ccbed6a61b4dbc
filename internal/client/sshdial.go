package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/bootstrap"
	"github.com/tether-sh/tether/internal/sshtransport"
	"github.com/tether-sh/tether/internal/wire"
)

// sshScheme starts an address reached through the user's OpenSSH.
const sshScheme = "ssh://"

// bareSSH: addresses without ssh:// mean ssh:// too (SetBareHostsSSH).
var bareSSH atomic.Bool

// SetBareHostsSSH makes addresses written without a scheme mean ssh://
// (client setting transport = "ssh", TETHER_TRANSPORT=ssh). They then
// print, and are remembered, with ssh://, so they keep their transport.
// It is process-wide: the command line sets it once, before parsing.
func SetBareHostsSSH(on bool) { bareSSH.Store(on) }

// parseSSHTarget parses what follows ssh://: [USER@]HOST[:PORT][/NAME],
// PORT being sshd's; without one, ssh_config's Port (or 22) applies. rest
// is empty when orig has no scheme (bare hosts meaning ssh://).
func parseSSHTarget(orig, rest string) (Target, error) {
	if !strings.HasPrefix(orig, sshScheme) {
		rest = orig
	}
	t, err := parseTarget(rest)
	if err != nil {
		return t, fmt.Errorf("%w (in %q)", err, orig)
	}
	hostPart, _, _ := strings.Cut(rest, "/")
	if t.Port == DefaultPort && !strings.HasSuffix(hostPart, fmt.Sprintf(":%d", DefaultPort)) {
		t.Port = 0
	}
	if strings.HasPrefix(t.Host, "-") {
		return t, fmt.Errorf("bad address %q: a host cannot start with '-'", orig)
	}
	t.SSH = true
	return t, nil
}

// SSHOptions say how ssh:// targets are reached: how ssh is run and what
// is installed on the host on first contact.
type SSHOptions struct {
	Transport sshtransport.Options
	Bootstrap bootstrap.Options // its SSH is set to &Transport
	// Flags are ssh's options from the command line (-p, -J, -F, -o);
	// set them before the first dial.
	Flags SSHFlags

	flagsOnce sync.Once
	cache     resolveCache
	selfOnce  sync.Once
	self      bootstrap.Binary
	selfErr   error
}

// SSHOptionsFromEnv reads TETHER_SSH (the ssh program), TETHER_SSH_CONFIG
// (ssh -F), TETHER_REMOTE_DIR (where binaries go on hosts) and
// TETHER_RELEASE_DIR (builds for other architectures). home and cacheDir
// are the client's.
func SSHOptionsFromEnv(getenv func(string) string, home, version string) *SSHOptions {
	o := &SSHOptions{}
	o.Transport = sshtransport.Options{
		Program:    getenv("TETHER_SSH"),
		ConfigFile: getenv("TETHER_SSH_CONFIG"),
		ControlDir: sshtransport.Dir(getenv, home),
	}
	o.Bootstrap = bootstrap.Options{
		Version:    version,
		Dir:        getenv("TETHER_REMOTE_DIR"),
		ReleaseDir: getenv("TETHER_RELEASE_DIR"),
		CacheDir:   filepath.Join(home, ".cache", "tether"),
	}
	return o
}

func (o *SSHOptions) binary() (bootstrap.Binary, error) {
	o.selfOnce.Do(func() { o.self, o.selfErr = o.Bootstrap.Self() })
	return o.self, o.selfErr
}

var defaultSSH = sync.OnceValue(func() *SSHOptions {
	home, _ := os.UserHomeDir()
	return SSHOptionsFromEnv(os.Getenv, home, "dev")
})

// errNotInstalled: the remote command was not found (or could not run):
// the host needs a bootstrap.
var errNotInstalled = errors.New("tether is not installed there")

// dialSSH reaches t through `ssh HOST tether serve --stdio`, installing
// Tether on the host first when it is not there. The inner SSH layer asks
// no key and checks no host key: OpenSSH did both, and the pipe ends in a
// process of the user's own.
func (d *Dialer) dialSSH(ctx context.Context, t Target) (*Conn, error) {
	o := d.sshOptions()
	o.Bootstrap.SSH = &o.Transport
	if o.Transport.ConnectTimeout == 0 {
		o.Transport.ConnectTimeout = d.timeout()
	}
	shown := t.WithSession("")
	h := sshtransport.Host{User: t.User, Host: t.Host, Port: t.Port}
	if h.Port == 0 {
		h.Port = o.Flags.Port // -p: sshd's port, as ssh takes it
	}
	fail := func(kind error, err error) error {
		return &HostError{t, kind, fmt.Errorf("%s: %w", shown, err)}
	}
	self, err := o.binary()
	if err != nil {
		return nil, fail(ErrAuth, err)
	}
	command, err := o.Bootstrap.ServeCommand(self)
	if err != nil {
		return nil, fail(ErrAuth, err)
	}
	sc, err := d.sshHandshake(ctx, o, h, command)
	if errors.Is(err, errNotInstalled) {
		bin, berr := o.Bootstrap.Ensure(ctx, h)
		if berr != nil {
			var se *sshtransport.Error
			if errors.As(berr, &se) {
				return nil, fail(sshKind(se), berr)
			}
			// Retrying cannot help a host Tether cannot be installed
			// on: refused as a refused login is.
			return nil, fail(ErrAuth, berr)
		}
		if command, err = o.Bootstrap.ServeCommand(bin); err == nil {
			sc, err = d.sshHandshake(ctx, o, h, command)
		}
		if errors.Is(err, errNotInstalled) {
			return nil, fail(ErrAuth, fmt.Errorf("the tether installed at %s on the host does not run (%v); is its file system mounted noexec? set TETHER_REMOTE_DIR to a directory that allows programs", o.Bootstrap.Path(bin), err))
		}
	}
	if err != nil {
		var se *sshtransport.Error
		if errors.As(err, &se) {
			return nil, fail(sshKind(se), err)
		}
		return nil, fail(ErrConnect, err)
	}
	c := &Conn{Target: t, shown: shown, ssh: sc, closed: make(chan struct{})}
	go func() {
		c.ssh.Wait()
		c.once.Do(func() { close(c.closed) })
	}()
	ka := d.Keepalive
	if ka == 0 {
		ka = 15 * time.Second
	}
	if ka > 0 {
		go c.keepalive(ka)
	}
	return c, nil
}

func sshKind(e *sshtransport.Error) error {
	switch e.Kind {
	case sshtransport.Auth:
		return ErrAuth
	case sshtransport.HostKey:
		return ErrHostKey
	}
	return ErrConnect
}

// sshHandshake runs command on h and speaks SSH over its stdio. A
// command that is not there (exit 127, or 126: not executable) is
// errNotInstalled; ssh's own failure is an *sshtransport.Error.
func (d *Dialer) sshHandshake(ctx context.Context, o *SSHOptions, h sshtransport.Host, command string) (*ssh.Client, error) {
	nc, err := o.Transport.Start(h, command)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User: "tether",
		// OpenSSH verified the host; the other end is the user's process.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		ClientVersion:   "SSH-2.0-tether",
	}
	type result struct {
		sc    ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if r.err = skipToReady(nc); r.err == nil {
			r.sc, r.chans, r.reqs, r.err = ssh.NewClientConn(nc, h.String(), cfg)
		}
		done <- r
	}()
	// With a terminal ssh may be asking for a password: no deadline but
	// ssh's own ConnectTimeout and the caller's ctx. Without one, the
	// host and its agent get a bounded time to answer.
	var limit <-chan time.Time
	if !sshtransport.HasTerminal() {
		tm := time.NewTimer(3*d.timeout() + 10*time.Second)
		defer tm.Stop()
		limit = tm.C
	}
	select {
	case r := <-done:
		if r.err == nil {
			return ssh.NewClient(r.sc, r.chans, r.reqs), nil
		}
		nc.Close()
		code, exited := nc.Wait(5 * time.Second)
		if !exited {
			nc.Kill()
			return nil, fmt.Errorf("ssh to %s: the remote tether did not answer (%v): %s", h, r.err, lastLine(nc.Stderr()))
		}
		switch code {
		case 126, 127:
			return nil, fmt.Errorf("%w (%s)", errNotInstalled, lastLine(nc.Stderr()))
		case 255:
			return nil, nc.Err()
		case 0:
			return nil, fmt.Errorf("ssh to %s: the remote tether ended before answering: %s", h, lastLine(nc.Stderr()))
		}
		return nil, fmt.Errorf("ssh to %s: the remote tether exited with status %d: %s", h, code, lastLine(nc.Stderr()))
	case <-ctx.Done():
		nc.Kill()
		return nil, ctx.Err()
	case <-limit:
		nc.Kill()
		return nil, &sshtransport.Error{Host: h, Kind: sshtransport.Connect, Code: 255,
			Line: fmt.Sprintf("ssh to %s: no answer within %s", h, 3*d.timeout()+10*time.Second)}
	}
}

// maxJunk bounds what a login may print before the stdio agent speaks.
const maxJunk = 1 << 20

// skipToReady reads up to the stdio agent's ready line, one byte at a
// time (what follows belongs to the SSH layer).
func skipToReady(r io.Reader) error {
	want := []byte("\n" + wire.StdioReady + "\n")
	var b [1]byte
	matched := 0
	for n := 0; n < maxJunk; n++ {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return err
		}
		switch {
		case b[0] == want[matched]:
			matched++
			if matched == len(want) {
				return nil
			}
		case b[0] == want[0]:
			matched = 1
		default:
			matched = 0
		}
	}
	return fmt.Errorf("no answer from the remote tether in the first %d bytes the login printed", maxJunk)
}

func lastLine(s string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			last = l
		}
	}
	if last == "" {
		return "it said nothing on stderr"
	}
	return last
}
