// Package agent is `tether serve`: it accepts SSH connections, authenticates
// users by their keys, starts and finds session hosts, relays each client
// channel to the right session host, and enforces the host's limits and
// policy. It never runs a user command itself.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/config"
	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/osuser"
	"github.com/tether-sh/tether/internal/safefs"
	"github.com/tether-sh/tether/internal/sshauth"
)

// DefaultPort is where `tether serve` listens unless told otherwise.
const DefaultPort = 4422

// Options configure an agent. cli fills them from flags.
type Options struct {
	Listen         string
	StateDir       string
	AuthorizedKeys string // sshd-style pattern, %h and %u
	ConfigPath     string // default StateDir/config.toml
	PolicyPath     string // default /etc/tether/policy.toml
	AdminGroup     string
	Modules        []string
	Executable     string // the tether binary that runs session hosts
	AddrFile       string // if set, the listening address is written there (tests, scripts)
	Logger         *slog.Logger

	MaxStartups          int           // concurrent unauthenticated connections; the busiest source's oldest is dropped beyond it
	MaxStartupsPerSource int           // the same per source (IPv4 address, IPv6 /64); its oldest is dropped beyond it
	MaxAuthTries         int           // authentication attempts per connection
	HandshakeTimeout     time.Duration // for the SSH handshake and authentication
	FirstRequestTimeout  time.Duration // for a channel's Hello and Request; the channel is closed after it
	DrainTimeout         time.Duration // a stopping agent's wait for running channels (drain.go); default DefaultDrainTimeout
	ScaleProcs           bool          // Serve runs on one P while lightly loaded, on all when busy (procs.go); changes the process's GOMAXPROCS
}

// Agent is a running `tether serve`.
type Agent struct {
	opts   Options
	hosts  hostPool // idle connections to session hosts (hostpool.go)
	log    *slog.Logger
	store  *config.Store
	server *ssh.ServerConfig
	self   *user.User
	root   bool
	mech   limits.Mechanism // how per-session process and memory limits are enforced

	mu        sync.Mutex
	sessions  map[string]map[string]*sessionRef // user -> name -> session
	spawning  map[string]int                    // user -> sessions admitted and still starting
	conns     int                               // authenticated connections (MaxConnections)
	userConns map[string]int                    // the same per user (MaxConnectionsPerUser)
	preauth   []*preauthConn                    // unauthenticated connections, oldest first
	penalties *penalties                        // per-source start-up penalties (sources.go)

	ln net.Listener
	wg sync.WaitGroup

	sdir       *os.File      // STATE/s, opened once: the root of every per-user path
	discovered chan struct{} // closed when start-up discovery is done or gave up
	stopping   atomic.Bool   // the agent is letting go of its sessions (closeWatches)

	drainMu    sync.Mutex
	drainConns map[*connDrain]struct{} // authenticated connections (drain.go)
	draining   bool
	procs      *procScaler // nil: GOMAXPROCS left alone
}

// New prepares an agent: state directory, host key, settings.
func New(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Listen == "" {
		opts.Listen = fmt.Sprintf("127.0.0.1:%d", DefaultPort)
	}
	if opts.AuthorizedKeys == "" {
		opts.AuthorizedKeys = "%h/.ssh/authorized_keys"
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(opts.StateDir, "config.toml")
	}
	if opts.PolicyPath == "" {
		opts.PolicyPath = "/etc/tether/policy.toml"
	}
	if opts.MaxStartups <= 0 {
		opts.MaxStartups = 100
	}
	if opts.MaxStartupsPerSource <= 0 {
		opts.MaxStartupsPerSource = min(defaultPerSource, opts.MaxStartups)
	}
	if opts.FirstRequestTimeout <= 0 {
		opts.FirstRequestTimeout = 10 * time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.MaxAuthTries <= 0 {
		opts.MaxAuthTries = 6
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 20 * time.Second
	}
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		opts.Executable = exe
	}
	self, err := osuser.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	a := &Agent{
		opts:       opts,
		log:        opts.Logger,
		self:       self,
		root:       os.Geteuid() == 0,
		sessions:   map[string]map[string]*sessionRef{},
		drainConns: map[*connDrain]struct{}{},
		discovered: make(chan struct{}),
		spawning:   map[string]int{},

		userConns: map[string]int{},
		penalties: newPenalties(nil),
	}
	// rootpath: STATE and STATE/s are the agent's own
	if err := os.MkdirAll(filepath.Join(opts.StateDir, "s"), 0o711); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// rootpath: STATE is the agent's own
	if err := os.Chmod(opts.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if a.sdir, err = safefs.OpenDir(filepath.Join(opts.StateDir, "s")); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := safefs.FchownMod(a.sdir, os.Geteuid(), os.Getegid(), 0o711); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	key, created, err := sshauth.LoadOrCreateHostKey(filepath.Join(opts.StateDir, "host_ed25519_key"))
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	if created {
		a.log.Info("generated host key", "fingerprint", sshauth.Fingerprint(key.PublicKey()))
	} else {
		a.log.Info("host key", "fingerprint", sshauth.Fingerprint(key.PublicKey()))
	}
	a.store, err = config.OpenStore(config.StoreOptions{
		LocalPath:  opts.ConfigPath,
		PolicyPath: opts.PolicyPath,
		Logger:     a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	a.server = a.serverConfig(key)
	var how string
	a.mech, how = limits.DetectDetail()
	a.log.Info("session limits", "mechanism", string(a.mech), "detail", how)
	return a, nil
}

// Store gives access to the host settings (for SIGHUP reloads).
func (a *Agent) Store() *config.Store { return a.store }

// Run listens and serves until ctx is cancelled. Session hosts keep running
// after it returns: stopping the agent never ends a session.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.opts.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", a.opts.Listen, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on an existing listener.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	raiseGCFloor()
	if a.opts.ScaleProcs {
		a.procs = newProcScaler()
	}
	a.ln = ln
	go a.discover(ctx) // in the background, with a deadline: see sessions.go
	cancelSub := a.store.Subscribe(func(config.Settings) { a.pushLimits() })
	defer cancelSub()
	go a.store.Watch(ctx)
	if a.opts.AddrFile != "" {
		// rootpath: --addr-file is the operator's
		if err := os.WriteFile(a.opts.AddrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write --addr-file: %w", err)
		}
	}
	a.log.Info("listening", "addr", ln.Addr().String(), "user", a.self.Username, "root", a.root, "state", a.opts.StateDir)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				a.closeWatches()
				a.drain(a.opts.DrainTimeout)
				a.wg.Wait()
				return nil
			}
			if temporaryAcceptError(err) {
				// As net/http's Server.Serve: out of descriptors or
				// buffers, or a connection reset before it was
				// accepted, passes; back off, do not exit.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				a.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.serveConn(ctx, c)
		}()
	}
}

// temporaryAcceptError reports whether an accept error passes: running out
// of file descriptors (EMFILE, ENFILE) or buffers (ENOBUFS, ENOMEM), a
// connection aborted before it was accepted (ECONNABORTED, and Linux's
// pending network errors it reports from accept), or a timeout.
func temporaryAcceptError(err error) bool {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
			syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
			syscall.EPROTO, syscall.ENETDOWN, syscall.ENOPROTOOPT, syscall.EHOSTDOWN,
			syscall.ENONET, syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH,
			syscall.EPERM: // a firewall refused the new connection
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Addr is the listening address.
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }
