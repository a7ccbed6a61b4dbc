package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tether-sh/tether/internal/e2e"
)

// TestScripts runs the CLI stories in testdata/script: each is a txtar
// file that runs the real tether binary against real agents it starts with
// the `agent` command (see agentCmd), as a user would type it.
func TestScripts(t *testing.T) {
	bin := e2e.Binary(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		// Not /tmp: like sshd, the agent refuses authorized_keys files below
		// a world-writable directory.
		WorkdirRoot: e2e.ShortTempDir(t),
		Setup: func(env *testscript.Env) error {
			home := filepath.Join(env.WorkDir, "home")
			cfg := filepath.Join(home, ".config", "tether")
			if err := os.MkdirAll(cfg, 0o700); err != nil {
				return err
			}
			// The key `make run` would make: the client offers it by default.
			e2e.Keygen(env.T().(testing.TB), filepath.Join(cfg, "id_ed25519"))
			env.Setenv("HOME", home)
			env.Setenv("USER", u.Username)
			env.Setenv("LOGNAME", u.Username)
			env.Setenv("SSH_AUTH_SOCK", "")
			env.Setenv("XDG_RUNTIME_DIR", "")
			env.Setenv("XDG_CONFIG_HOME", "")
			env.Setenv("XDG_STATE_HOME", "")
			env.Setenv("TETHER_CONTROL_PERSIST", "")
			env.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("ME", u.Username)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"agent":   agentCmd,
			"waitfor": waitforCmd,
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// agent start NAME [serve flags...]: start `tether serve` on 127.0.0.1 with
// its own state in $WORK/NAME, authorizing $HOME's key, wait until it
// listens, and set $NAME to its address. The agent is stopped at the end.
//
// agent stop NAME | agent kill9 NAME | agent restart NAME | agent log NAME
func agentCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! agent")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: agent start|stop|kill9|restart|log NAME [flags]")
	}
	verb, name := args[0], args[1]
	dir := ts.MkAbs(name)
	switch verb {
	case "start":
		if err := os.MkdirAll(dir, 0o755); err != nil {
			ts.Fatalf("%v", err)
		}
		pub, err := os.ReadFile(filepath.Join(ts.Getenv("HOME"), ".config", "tether", "id_ed25519.pub"))
		ts.Check(err)
		ts.Check(os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
		flags := append([]string{"serve", "--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "st"),
			"--authorized-keys", filepath.Join(dir, "authorized_keys"), "--policy", filepath.Join(dir, "policy.toml"),
			"--log-level", "debug"}, args[2:]...)
		ts.Check(os.WriteFile(filepath.Join(dir, "flags"), []byte(strings.Join(flags, "\x00")), 0o600))
		startAgent(ts, name, dir, "")
	case "stop", "kill9":
		p := agentsOf(ts)[name]
		if p == nil || p.exited() {
			ts.Fatalf("agent %s is not running", name)
		}
		sig := syscall.SIGTERM
		if verb == "kill9" {
			sig = syscall.SIGKILL
		}
		p.cmd.Process.Signal(sig)
		<-p.done
	case "restart":
		p := agentsOf(ts)[name]
		if p == nil {
			ts.Fatalf("agent %s was never started", name)
		}
		p.cmd.Process.Signal(syscall.SIGTERM) // nothing if it was stopped
		<-p.done
		startAgent(ts, name, dir, p.addr)
	case "log":
		b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		ts.Stdout().Write(b)
	default:
		ts.Fatalf("unknown agent verb %q", verb)
	}
}

type agentProc struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	done chan struct{}
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// runningAgents are the agents of each script, by name. Scripts run in
// parallel, but each touches only its own entry.
var (
	agentsMu      sync.Mutex
	runningAgents = map[*testscript.TestScript]map[string]*agentProc{}
)

func agentsOf(ts *testscript.TestScript) map[string]*agentProc {
	agentsMu.Lock()
	defer agentsMu.Unlock()
	m := runningAgents[ts]
	if m == nil {
		m = map[string]*agentProc{}
		runningAgents[ts] = m
		ts.Defer(func() {
			for _, p := range m {
				p.cmd.Process.Signal(syscall.SIGTERM)
				<-p.done
			}
			// Session hosts outlive their agent by design; a story's end
			// ends them too.
			for _, p := range m {
				e2e.KillSessionHosts(filepath.Join(p.dir, "st"))
			}
			agentsMu.Lock()
			delete(runningAgents, ts)
			agentsMu.Unlock()
		})
	}
	return m
}

func startAgent(ts *testscript.TestScript, name, dir, addr string) {
	raw, err := os.ReadFile(filepath.Join(dir, "flags"))
	ts.Check(err)
	flags := strings.Split(string(raw), "\x00")
	if addr != "" {
		for i := range flags {
			if flags[i] == "--listen" {
				flags[i+1] = addr
			}
		}
	}
	addrFile := filepath.Join(dir, "addr")
	os.Remove(addrFile)
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(tetherPath(ts), append(flags, "--addr-file", addrFile)...)
	cmd.Env = []string{"HOME=" + ts.Getenv("HOME"), "USER=" + ts.Getenv("USER"), "PATH=" + ts.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	p := &agentProc{cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	agentsOf(ts)[name] = p
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			p.addr = strings.TrimSpace(string(b))
			if addr != "" && p.addr != addr {
				ts.Fatalf("agent %s restarted on %s, not %s", name, p.addr, addr)
			}
			ts.Setenv(name, p.addr)
			return
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			ts.Fatalf("agent %s exited at start:\n%s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			ts.Fatalf("agent %s did not listen within 20s", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitfor SECONDS CMD ARGS...: run a tether command until it succeeds and
// its stdout contains the last argument, or fail after SECONDS.
func waitforCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: waitfor SECONDS WANT tether ARGS...")
	}
	var secs int
	fmt.Sscan(args[0], &secs)
	want := args[1]
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for {
		if args[2] != "tether" {
			ts.Fatalf("waitfor runs tether commands only")
		}
		cmd := exec.Command(tetherPath(ts), args[3:]...)
		cmd.Env = []string{"HOME=" + ts.Getenv("HOME"), "USER=" + ts.Getenv("USER"), "PATH=" + ts.Getenv("PATH")}
		out, err := cmd.Output()
		ok := err == nil && strings.Contains(string(out), want)
		if ok != neg {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfor: %q %s in the output of %v within %ds; last output:\n%s", want, map[bool]string{false: "never appeared", true: "never left"}[neg], args[2:], secs, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tetherPath is the binary under test (first on the script's PATH).
func tetherPath(ts *testscript.TestScript) string {
	return filepath.Join(strings.Split(ts.Getenv("PATH"), string(os.PathListSeparator))[0], "tether")
}
