// Package e2e starts real tether agents and runs the real tether binary
// against them, for end-to-end tests and benchmarks: it builds the binary
// once, makes keys, starts agents on loopback with their own state, and runs
// clients with their own HOME.
package e2e

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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/tstest"
)

var (
	buildOnce sync.Once
	buildPath string
	buildDir  string // made by Binary; Main removes it
	buildErr  error
)

// Main runs a test binary's tests (use it as TestMain in every package
// that calls Binary) and then removes the binary Binary built, which would
// otherwise stay behind in /tmp: 12 MB per test process. Before the tests
// it ends what earlier test processes that died left running (reap.go).
func Main(m *testing.M) {
	reapOrphans()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Binary builds ./cmd/tether once per process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("TETHER_BIN"); p != "" {
			buildPath = p
			return
		}
		dir, err := os.MkdirTemp("", "tether-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		if err := writeOwner(dir); err != nil {
			buildErr = fmt.Errorf("build dir owner: %w", err)
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		os.Chmod(dir, 0o755) // session hosts of other users run it too
		buildPath = filepath.Join(dir, "tether")
		args := []string{"build", "-o", buildPath}
		cgo := "CGO_ENABLED=0" // as `make build` ships it: static, user look-ups through internal/osuser
		if raceEnabled && os.Getenv("TETHER_E2E_RACE") != "" {
			args = append(args, "-race")
			cgo = "CGO_ENABLED=1" // the race detector needs cgo
		}
		cmd := exec.Command("go", append(args, "./cmd/tether")...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// ShortTempDir is a temp dir with a short path (unix socket paths are
// limited to 108 bytes), removed at the end of the test.
//
// It lives under ~/.cache/tether-e2e, not /tmp: like sshd, the agent refuses
// authorized_keys files below a world-writable directory.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	base := testBase()
	d, err := os.MkdirTemp(base, "t")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var (
	baseOnce sync.Once
	baseDir  string
)

func testBase() string {
	baseOnce.Do(func() {
		if os.Geteuid() == 0 {
			// Session hosts of other users must reach their state: no /root.
			baseDir = "/var/lib/tether-e2e"
		} else {
			home, _ := os.UserHomeDir()
			baseDir = filepath.Join(home, ".cache", "tether-e2e")
		}
		os.MkdirAll(baseDir, 0o755)
		os.Chmod(baseDir, 0o755)
	})
	return baseDir
}

// Keygen writes an ed25519 key pair at path and path.pub.
func Keygen(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return sp
}

// Agent is a running `tether serve`.
type Agent struct {
	t       testing.TB
	Addr    string // host:port
	State   string
	LogPath string
	args    []string
	cmd     *exec.Cmd
	done    chan struct{}
}

// AgentOptions configure StartAgent.
type AgentOptions struct {
	State          string   // reuse a state dir (restarts); default a new one
	AuthorizedKeys string   // file or pattern; default: a file with the test key
	Keys           []string // public key files to authorize when AuthorizedKeys is empty
	Listen         string   // default 127.0.0.1:0
	Args           []string // more flags
	Env            []string
	Credential     *syscall.Credential // run the agent as another user
}

// Shell is the session shell the e2e run tests ($TETHER_E2E_SHELL: bash or
// builtin; "" the host's default, bash where there is one). make test runs
// the suite once per shell.
func Shell() string { return os.Getenv("TETHER_E2E_SHELL") }

// BuiltinShell says the run's sessions are the builtin interpreter, for
// the few stories whose expected output differs between the shells.
func BuiltinShell() bool { return Shell() == "builtin" }

// StartAgent starts an agent and waits until it listens.
func StartAgent(t testing.TB, o AgentOptions) *Agent {
	t.Helper()
	if o.State == "" {
		o.State = filepath.Join(ShortTempDir(t), "st")
	}
	if o.AuthorizedKeys == "" {
		dir := ShortTempDir(t)
		var b bytes.Buffer
		for _, k := range o.Keys {
			data, err := os.ReadFile(k)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
		o.AuthorizedKeys = filepath.Join(dir, "authorized_keys")
		if err := os.WriteFile(o.AuthorizedKeys, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if o.Credential != nil {
			os.Chown(dir, int(o.Credential.Uid), int(o.Credential.Gid))
			os.Chown(o.AuthorizedKeys, int(o.Credential.Uid), int(o.Credential.Gid))
		}
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	a := &Agent{t: t, State: o.State}
	settings := filepath.Join(o.State, "..", "config.toml")
	if sh := Shell(); sh != "" {
		// The shell every session of the run gets, unless a test asks.
		if _, err := os.Stat(settings); os.IsNotExist(err) {
			if err := os.WriteFile(settings, []byte("DefaultShell = \""+sh+"\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if o.Credential != nil {
				os.Chown(settings, int(o.Credential.Uid), int(o.Credential.Gid))
			}
		}
	}
	a.args = append([]string{"serve", "--listen", o.Listen, "--state", o.State, "--config", settings,
		"--authorized-keys", o.AuthorizedKeys, "--policy", filepath.Join(o.State, "..", "policy.toml"), "--log-level", "debug"}, o.Args...)
	a.start(o.Env, o.Credential)
	t.Cleanup(func() {
		a.Stop()
		if strings.Contains(a.Log(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in the agent")
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", a.Addr, a.Log())
		}
	})
	return a
}

func (a *Agent) start(env []string, cred *syscall.Credential) {
	t := a.t
	t.Helper()
	if err := os.MkdirAll(a.State, 0o700); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		os.Chown(a.State, int(cred.Uid), int(cred.Gid))
		os.Chown(filepath.Dir(a.State), int(cred.Uid), int(cred.Gid))
	}
	addrFile := filepath.Join(filepath.Dir(a.State), "addr")
	os.Remove(addrFile)
	a.LogPath = filepath.Join(filepath.Dir(a.State), "agent.log")
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append(append([]string{}, a.args...), "--addr-file", addrFile)
	if a.Addr != "" {
		// Restart on the same port, so clients can reconnect.
		for i, v := range args {
			if v == "--listen" {
				args[i+1] = a.Addr
			}
		}
	}
	cmd := exec.Command(Binary(t), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd = cmd
	a.done = make(chan struct{})
	go func() {
		cmd.Wait()
		close(a.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && strings.HasSuffix(string(b), "\n") {
			a.Addr = strings.TrimSpace(string(b))
			return
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited at start:\n%s", a.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not listen within 20s:\n%s", a.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Host is the agent's address as a tether host ("127.0.0.1:PORT").
func (a *Agent) Host() string { return a.Addr }

// Port is the agent's port.
func (a *Agent) Port() string {
	_, p, _ := net.SplitHostPort(a.Addr)
	return p
}

// Log returns what the agent logged so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
}

// Kill9 kills the agent with SIGKILL, as a crash would.
func (a *Agent) Kill9() {
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
}

// Restart starts the agent again on the same address and state.
func (a *Agent) Restart() {
	a.start(nil, nil)
}

// Stop stops the agent with SIGTERM, and the session hosts it left behind.
func (a *Agent) Stop() {
	select {
	case <-a.done:
	default:
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
	}
	KillSessionHosts(a.State)
}

// KillSessionHosts ends the session hosts whose state lives under state,
// and removes the cgroups their agent made for them.
func KillSessionHosts(state string) {
	var groups []string
	defer func() {
		for _, name := range groups {
			for _, ctl := range []string{"memory", "pids", "unified"} {
				d := filepath.Join("/sys/fs/cgroup", ctl, "tether", name)
				for _, sub := range []string{"cmds", "host"} {
					// Commands outlive their killed session host.
					b, _ := os.ReadFile(filepath.Join(d, sub, "cgroup.procs"))
					for _, f := range strings.Fields(string(b)) {
						if pid, err := strconv.Atoi(f); err == nil {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				for _, sub := range []string{"cmds", "host", ""} {
					for i := 0; i < 250 && os.Remove(filepath.Join(d, sub)) != nil; i++ {
						if _, err := os.Stat(filepath.Join(d, sub)); err != nil {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		}
	}()
	metas, _ := filepath.Glob(filepath.Join(state, "s", "*", "*", "meta.json"))
	for _, m := range metas {
		b, err := readRegular(m) // attack tests plant FIFOs and /dev/zero links here
		if err != nil {
			continue
		}
		var meta struct {
			PID  int    `json:"pid"`
			User string `json:"user"`
			Name string `json:"name"`
		}
		json.Unmarshal(b, &meta)
		if u, err := user.Lookup(meta.User); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			groups = append(groups, limits.GroupID{UID: uid, User: meta.User, Session: meta.Name, StateDir: state}.Name())
		}
		if meta.PID > 0 {
			syscall.Kill(meta.PID, syscall.SIGKILL)
		}
	}
}

// readRegular reads a small regular file without following a symlink or
// blocking on a FIFO.
func readRegular(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// PID is the agent process's pid.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Client runs the tether binary as one client machine: its own HOME (so its
// own registry and known_hosts) and a key.
type Client struct {
	t    testing.TB
	Home string
	Key  string
	User string
	Env  []string
}

// NewClient makes a client home with a fresh key (Key, Key+".pub").
func NewClient(t testing.TB) *Client {
	t.Helper()
	home := ShortTempDir(t)
	key := filepath.Join(home, "id_ed25519")
	Keygen(t, key)
	u, _ := user.Current()
	return &Client{t: t, Home: home, Key: key, User: u.Username}
}

// WithKey is another client machine (another HOME) with the same key.
func (c *Client) WithKey() *Client {
	home := ShortTempDir(c.t)
	return &Client{t: c.t, Home: home, Key: c.Key, User: c.User}
}

// PubKey is the path of the client's public key.
func (c *Client) PubKey() string { return c.Key + ".pub" }

// Command builds a tether command for this client.
func (c *Client) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"-i", c.Key}, args...)
	cmd := exec.CommandContext(ctx, Binary(c.t), full...)
	cmd.Env = append([]string{
		"HOME=" + c.Home,
		"USER=" + c.User,
		"PATH=" + os.Getenv("PATH"),
		"SSH_AUTH_SOCK=",
	}, c.Env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs tether with args and no stdin.
func (c *Client) Run(args ...string) Result {
	return c.RunIn(nil, args...)
}

// RunIn runs tether with args and stdin.
func (c *Client) RunIn(stdin io.Reader, args ...string) Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.Command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("tether %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// MustRun runs tether and fails the test unless it exits 0.
func (c *Client) MustRun(args ...string) string {
	c.t.Helper()
	r := c.Run(args...)
	if r.Code != 0 {
		c.t.Fatalf("tether %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// WaitFor is tstest.WaitFor, kept so the e2e tests read as before.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	tstest.WaitFor(t, timeout, what, cond)
}

// Term stops the agent the way `systemctl stop` does with KillMode=process:
// SIGTERM to the agent alone, session hosts untouched.
func (a *Agent) Term() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.t.Fatalf("agent did not stop on SIGTERM")
	}
}

// SyncBuffer is a bytes.Buffer safe to read while a process writes to it.
type SyncBuffer = tstest.SyncBuffer
