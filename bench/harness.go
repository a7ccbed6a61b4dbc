package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/wire"
)

// bench is the workspace of one run: keys, a client home, agents, sshd.
type bench struct {
	bin     string // tether binary
	dir     string // workspace root (under ~/.cache: not world-writable, like sshd wants)
	key     string // client private key (OpenSSH format), key+".pub"
	signer  ssh.Signer
	home    string // the tether CLI's HOME
	user    string
	client  wire.Client // the CLI's identity, so Go and CLI clients share sessions
	agents  []*agentProc
	cleanup []func()
	mu      sync.Mutex
	// shell, if set, is every agent's DefaultShell (a policy file), so
	// that the figures are of bash or of builtin sessions.
	shell string
}

// writeShellPolicy writes dir/policy.toml setting the run's DefaultShell
// (b.shell); it returns the file's path, or "" when no shell is asked for.
func (b *bench) writeShellPolicy(dir string) (string, error) {
	if b.shell == "" {
		return "", nil
	}
	p := filepath.Join(dir, "policy.toml")
	return p, os.WriteFile(p, []byte("DefaultShell = \""+b.shell+"\"\n"), 0o644)
}

func newBench(bin string) (*bench, error) {
	home, err := os.UserHomeDir()
	if err != nil || home == "" || home == "/" {
		home = "/var/lib"
	}
	base := filepath.Join(home, ".cache", "tether-bench")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(base, "r")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	b := &bench{bin: bin, dir: dir}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	b.user = u.Username
	b.home = filepath.Join(dir, "home")
	os.MkdirAll(b.home, 0o700)
	b.key = filepath.Join(dir, "id_ed25519")
	if b.signer, err = keygen(b.key); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bench) atExit(f func()) {
	b.mu.Lock()
	b.cleanup = append(b.cleanup, f)
	b.mu.Unlock()
}

func (b *bench) close() {
	b.mu.Lock()
	fs := b.cleanup
	b.cleanup = nil
	b.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, a := range b.agents {
		a.stop()
	}
	os.RemoveAll(b.dir)
}

// keygen writes an ed25519 key pair usable by both ssh and tether.
func keygen(path string) (ssh.Signer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "bench")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sp, _ := ssh.NewPublicKey(pub)
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// agentProc is a `tether serve` child process.
type agentProc struct {
	addr  string
	state string
	log   string
	cmd   *exec.Cmd
	done  chan struct{}
}

// spawnAgent starts `tether serve` on a loopback port with its files in d
// (state, log, address file, the run's shell policy) and keys ak, plus
// extra serve flags, and waits until it listens.
func (b *bench) spawnAgent(d, ak string, extra ...string) (*agentProc, error) {
	if _, err := b.writeShellPolicy(d); err != nil {
		return nil, err
	}
	a := &agentProc{state: filepath.Join(d, "st"), log: filepath.Join(d, "agent.log"), done: make(chan struct{})}
	addrFile := filepath.Join(d, "addr")
	os.Remove(addrFile)
	logf, err := os.Create(a.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"serve", "--listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--state", a.state, "--authorized-keys", ak, "--policy", filepath.Join(d, "policy.toml"), "--log-level", "warn"}
	a.cmd = exec.Command(b.bin, append(args, extra...)...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	b.agents = append(b.agents, a)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s, err := os.ReadFile(addrFile); err == nil && strings.HasSuffix(string(s), "\n") {
			a.addr = strings.TrimSpace(string(s))
			break
		}
		select {
		case <-a.done:
			l, _ := os.ReadFile(a.log)
			return nil, fmt.Errorf("agent exited at start: %s", l)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("agent did not listen within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := strconv.Atoi(a.addr[strings.LastIndex(a.addr, ":")+1:]); err != nil {
		return nil, fmt.Errorf("agent address %q", a.addr)
	}
	// Every agent has a new host key, and the kernel hands out ports
	// again: an earlier agent's key for this port would read as changed.
	b.tether(nil, "known-hosts", "remove", a.addr)
	return a, nil
}

// startAgent starts `tether serve` on loopback with its own state in the
// bench workspace (name) and extra serve flags, and raises
// MaxShellsPerUser/MaxConnections with `tether config set` when maxShells > 0.
func (b *bench) startAgent(name string, maxShells int, extra ...string) (*agentProc, error) {
	d := filepath.Join(b.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	ak := filepath.Join(d, "authorized_keys")
	pub, _ := os.ReadFile(b.key + ".pub")
	if err := os.WriteFile(ak, pub, 0o600); err != nil {
		return nil, err
	}
	a, err := b.spawnAgent(d, ak, extra...)
	if err != nil {
		return nil, err
	}
	if maxShells > 0 {
		for _, kv := range [][2]string{{"MaxShellsPerUser", strconv.Itoa(maxShells)}, {"MaxConnections", "2000"}} {
			if out, err := b.tether(nil, "config", "set", a.addr, kv[0], kv[1]); err != nil {
				return nil, fmt.Errorf("tether config set %s: %v: %s", kv[0], err, out)
			}
		}
	}
	if b.client.ID == "" {
		// The CLI's identity, made by its first run (config set above, or
		// this list when no setting was changed).
		idFile := filepath.Join(b.home, ".config", "tether", "client-id")
		if _, err := os.Stat(idFile); err != nil {
			b.tether(nil, "list", a.addr)
		}
		id, err := os.ReadFile(idFile)
		if err == nil {
			h, _ := os.Hostname()
			cid := strings.TrimSpace(string(id))
			b.client = wire.Client{ID: cid, Host: fmt.Sprintf("%s (client %s)", h, cid[:min(6, len(cid))])}
		}
	}
	return a, nil
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

func (a *agentProc) alive() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// stop ends the agent and every session host it started.
func (a *agentProc) stop() {
	if a.alive() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
	}
	// The session hosts outlive their agent by design; a bench run
	// leaves neither them nor their cgroups (two per session) behind.
	e2e.KillSessionHosts(a.state)
}

// sessionPIDs reads the session hosts' pids from their meta.json.
func (a *agentProc) sessionPIDs() []int {
	metas, _ := filepath.Glob(filepath.Join(a.state, "s", "*", "*", "meta.json"))
	var pids []int
	for _, m := range metas {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var meta struct {
			PID int `json:"pid"`
		}
		if json.Unmarshal(data, &meta) == nil && meta.PID > 0 {
			pids = append(pids, meta.PID)
		}
	}
	return pids
}

// tetherCmd builds a tether CLI command as the bench's client machine.
func (b *bench) tetherCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, b.bin, append([]string{"-i", b.key}, args...)...)
	cmd.Env = []string{"HOME=" + b.home, "USER=" + b.user, "PATH=" + os.Getenv("PATH"), "SSH_AUTH_SOCK="}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// tether runs the CLI and returns its combined output.
func (b *bench) tether(stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := b.tetherCmd(ctx, args...)
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
	err := cmd.Run()
	return out.String(), err
}

// dialer is an in-process Go client with the CLI's key, identity and known_hosts.
func (b *bench) dialer() *client.Dialer {
	return &client.Dialer{
		Signers:     []ssh.Signer{b.signer},
		KnownHosts:  &sshauth.KnownHosts{Path: filepath.Join(b.home, ".config", "tether", "known_hosts"), DefaultPort: client.DefaultPort},
		DefaultUser: b.user,
		Client:      b.client,
	}
}

func mustTarget(s string) client.Target {
	t, err := client.ParseTarget(s)
	if err != nil {
		panic(err)
	}
	return t
}

// newSessions opens n sessions on agent a through one Go connection, as
// the CLI client (so `tether invoke` may use them).
func (b *bench) newSessions(a *agentProc, n int) ([]string, error) {
	ctx := context.Background()
	d := b.dialer()
	c, err := d.Dial(ctx, mustTarget(a.addr))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []string
	for i := 0; i < n; i++ {
		resp, err := c.Call(ctx, wire.Request{Op: wire.OpNew, Client: b.client, NoProfile: b.shell == "bash"})
		if err != nil {
			return out, fmt.Errorf("session %d on %s: %w", i+1, a.addr, err)
		}
		out = append(out, a.addr+"/"+resp.Session.Name)
	}
	return out, nil
}

// removeSessions closes sessions through one Go connection per host.
func (b *bench) removeSessions(addrs []string) {
	ctx := context.Background()
	d := b.dialer()
	conns := map[string]*client.Conn{}
	for _, s := range addrs {
		t := mustTarget(s)
		c := conns[t.HostPort()]
		if c == nil {
			var err error
			if c, err = d.Dial(ctx, t); err != nil {
				continue
			}
			conns[t.HostPort()] = c
		}
		c.Call(ctx, wire.Request{Op: wire.OpRemove, Session: t.Session, Client: b.client})
	}
	for _, c := range conns {
		c.Close()
	}
}

// freePort is a loopback port nobody listens on right now.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
