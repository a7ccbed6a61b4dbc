package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/atomicfile"
	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/mux"
	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/wire"
)

// session is a client ready to talk to agents.
type session struct {
	env      *Env
	dialer   *client.Dialer
	registry *client.Registry
	closer   io.Closer
}

func (s *session) Close() {
	if s.closer != nil {
		s.closer.Close()
	}
}

func (g *globals) setup(env *Env) (*session, error) {
	persist, set, err := controlPersist(env)
	if err != nil {
		return nil, err
	}
	if !set {
		// Unset: ssh:// hosts get a tether master anyway, as ssh's own
		// ControlPersist, so a command to one starts neither ssh nor a
		// tether process on the host; direct agents are dialled as before.
		return g.setupWith(env, sshMasterPersist, true)
	}
	return g.setupWith(env, persist, false)
}

// setupWith is setup with a ControlPersist time: when positive, channels
// come from a master process (started on first use; for ssh:// targets
// only with sshOnly) and keys are loaded only when a connection has to be
// made here.
func (g *globals) setupWith(env *Env, persist time.Duration, sshOnly bool) (*session, error) {
	dir := configDir(env)
	home := homeDir(env)
	kh := g.knownHosts
	if kh == "" {
		kh = filepath.Join(dir, "known_hosts")
	}
	timeout, err := parseSeconds(g.connectTimeout)
	if err != nil || timeout <= 0 {
		return nil, fmt.Errorf("bad --connect-timeout %q: use seconds, as ssh's ConnectTimeout (5), or a duration (5s, 1m)", g.connectTimeout)
	}
	d := &client.Dialer{
		KnownHosts:  &sshauth.KnownHosts{Path: kh, DefaultPort: client.DefaultPort, Notify: env.Stderr},
		DefaultUser: g.login(env),
		Timeout:     timeout,
		Client:      clientIdentity(dir),
		SSH:         client.SSHOptionsFromEnv(env.Getenv, home, Version),
	}
	d.SSH.Flags = g.ssh
	d.SSH.Flags.Login = g.user
	d.SSH.Transport.Notify = env.Stderr
	s := &session{env: env, dialer: d, registry: &client.Registry{Path: filepath.Join(dir, "sessions.json")}}
	// Keys are loaded on the first direct dial: ssh:// targets (ssh has
	// its own) and borrowed channels need none.
	var (
		once    sync.Once
		signers []ssh.Signer
		closer  io.Closer
		lerr    error
	)
	d.LoadSigners = func() ([]ssh.Signer, error) {
		once.Do(func() { signers, closer, lerr = g.signers(env, dir, home) })
		return signers, lerr
	}
	s.closer = closerFunc(func() error {
		once.Do(func() {}) // no loading after this
		if closer != nil {
			return closer.Close()
		}
		return nil
	})
	if persist <= 0 {
		return s, nil
	}
	d.Mux = &client.MuxOptions{
		Dir:     mux.Dir(env.Getenv, home),
		SSHOnly: sshOnly,
		Start:   func(t client.Target) { g.startMaster(t, persist) },
	}
	return s, nil
}

// parseSeconds reads a plain number as seconds, as ssh -o ConnectTimeout=5
// does, and anything else as a Go duration ("5s", "1m30s").
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 || n > 1e6 {
			return 0, fmt.Errorf("%v seconds is out of range", n)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// signers loads the keys to offer.
func (g *globals) signers(env *Env, dir, home string) ([]ssh.Signer, io.Closer, error) {
	signers, closer, err := sshauth.ClientSigners(g.identity, home, env.Getenv)
	if g.identity == "" {
		// The key pair `make run` creates is offered too, after the user's own.
		if extra, kerr := loadKey(filepath.Join(dir, "id_ed25519")); kerr == nil {
			signers = append(signers, extra)
			err = nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if len(signers) == 0 {
		closer.Close()
		return nil, nil, errors.New("no SSH key to offer: pass -i FILE, start ssh-agent, or create ~/.ssh/id_ed25519 (ssh-keygen -t ed25519)")
	}
	return signers, closer, nil
}

// login is the default login name on the hosts.
func (g *globals) login(env *Env) string {
	login := g.user
	if login == "" {
		login = env.Getenv("USER")
	}
	if login == "" {
		if u, err := user.Current(); err == nil {
			login = u.Username
		}
	}
	return login
}

func loadKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(b)
}

// clientIdentity is this client machine's stable id plus its host name, so a
// session can say which client holds it.
func clientIdentity(dir string) wire.Client {
	host, _ := os.Hostname()
	path := filepath.Join(dir, "client-id")
	id := ""
	if b, err := os.ReadFile(path); err == nil {
		id = strings.TrimSpace(string(b))
	}
	if id == "" {
		b := make([]byte, 8)
		rand.Read(b)
		id = hex.EncodeToString(b)
		os.MkdirAll(dir, 0o700)
		if err := atomicfile.WriteNewFile(path, []byte(id+"\n"), 0o600); errors.Is(err, fs.ErrExist) {
			// another process won the race: use its id
			if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
				id = strings.TrimSpace(string(b))
			}
		}
	}
	return wire.Client{ID: id, Host: fmt.Sprintf("%s (client %s)", host, id[:min(6, len(id))])}
}

// cliParseTargets is client.ParseTargets with a clear word for a list
// separated by spaces, which the address parser would take for one odd
// address (and, with ports, for an IPv6 address without brackets).
func cliParseTargets(arg string) ([]client.Target, error) {
	if err := checkCommaSeparated(arg); err != nil {
		return nil, err
	}
	return client.ParseTargets(arg)
}

// checkCommaSeparated refuses a list whose addresses are separated by
// spaces, with the list as it should have been written.
func checkCommaSeparated(arg string) error {
	for _, part := range strings.Split(arg, ",") {
		if f := strings.Fields(part); len(f) > 1 {
			return fmt.Errorf("bad address list %q: separate addresses with commas, not spaces (%s)", arg, strings.Join(strings.Fields(arg), ","))
		}
	}
	return nil
}

// parseTargets parses a comma-separated address list, requiring session
// addresses or host addresses.
func parseTargets(arg string, wantSession bool) ([]client.Target, error) {
	ts, err := cliParseTargets(arg)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if wantSession && t.Session == "" {
			return nil, fmt.Errorf("%s is a host, not a session: use HOST/NAME (tether list HOST shows the names)", t)
		}
		if !wantSession && t.Session != "" {
			return nil, fmt.Errorf("%s is a session address; this command takes hosts ([USER@]HOST[:PORT])", t)
		}
	}
	return ts, nil
}

// dial opens a connection of its own to t's host (forTargets shares one
// per host instead).
func (s *session) dial(ctx context.Context, t client.Target) (*client.Conn, error) {
	return s.dialer.Dial(ctx, t)
}

// display is the address as the user should see it, with the login name
// only when it differs from the default.
func (s *session) display(t client.Target) client.Target {
	if t.User == s.dialer.DefaultUser {
		t.User = ""
	}
	return t
}

// full is the address with the login name, as stored in the registry.
func (s *session) full(t client.Target) string {
	return t.WithUser(s.dialer.DefaultUser).String()
}
