package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var masterPID = regexp.MustCompile(`master running: pid (\d+),`)

// muxMaster returns the pid of the client's master for host, or 0.
func muxMaster(c *Client, host string) int {
	r := c.Run("mux", "status", host)
	m := masterPID.FindStringSubmatch(r.Stdout)
	if r.Code != 0 || m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// stopMasters stops the client's master for host at the end of the test and
// makes sure no master process is left behind.
func stopMasters(t *testing.T, c *Client, host string, pids *[]int) {
	t.Cleanup(func() {
		if pid := muxMaster(c, host); pid > 0 {
			*pids = append(*pids, pid)
		}
		c.Run("mux", "stop", host)
		for _, pid := range *pids {
			deadline := time.Now().Add(10 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("master %d still running after mux stop", pid)
			}
		}
	})
}

func TestControlPersistSharesOneConnection(t *testing.T) {
	a, c := setup(t)
	c.Env = []string{"TETHER_CONTROL_PERSIST=1m"}
	var pids []int
	stopMasters(t, c, a.Host(), &pids)

	if r := c.Run("mux", "status", a.Host()); r.Code != 255 || !strings.Contains(r.Stdout, "no master") {
		t.Fatalf("status before any command: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	addr := strings.TrimSpace(c.MustRun("new", "--name", "m", a.Host()))
	// The first command connected directly and started a master.
	var pid int
	WaitFor(t, 10*time.Second, "a master", func() bool { pid = muxMaster(c, a.Host()); return pid > 0 })
	pids = append(pids, pid)
	opened := strings.Count(a.Log(), "connection opened")

	c.MustRun("invoke", addr, "x=42")
	if out := c.MustRun("invoke", addr, "echo $x"); out != "42\n" {
		t.Fatalf("state through the master: %q", out)
	}
	r := c.Run("invoke", addr, "echo out; echo err >&2; exit 3")
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("exit/stdout/stderr through the master: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// stdin both ways, more than a frame and a window.
	big := make([]byte, 3<<20)
	rand.Read(big)
	in := hex.EncodeToString(big)
	r = c.RunIn(strings.NewReader(in), "invoke", addr, "cat")
	if r.Code != 0 || r.Stdout != in {
		t.Fatalf("cat through the master: exit %d, %d bytes back of %d; stderr %q", r.Code, len(r.Stdout), len(in), r.Stderr)
	}
	// Refusals read as on a direct connection.
	r = c.Run("invoke", a.Host()+"/nosuch", "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "no session nosuch") {
		t.Fatalf("missing session through the master: %d %q", r.Code, r.Stderr)
	}
	if out := c.MustRun("list", a.Host()); !strings.Contains(out, "m") {
		t.Fatalf("list through the master: %q", out)
	}
	// A bare host (temporary session) and a fan-out over two sessions.
	if out := c.MustRun("invoke", a.Host(), "echo bare"); out != "bare\n" {
		t.Fatalf("bare host: %q", out)
	}
	addr2 := strings.TrimSpace(c.MustRun("new", a.Host()))
	out := c.MustRun("invoke", addr+","+addr2, "echo hi")
	if strings.Count(out, "hi\n") != 2 {
		t.Fatalf("fan-out: %q", out)
	}
	// enter, reading commands from stdin, runs them through the master too.
	if r := c.RunIn(strings.NewReader("echo $x\ny=7\necho $y\n"), "enter", addr); r.Code != 0 || r.Stdout != "42\n7\n" {
		t.Fatalf("enter through the master: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// None of these made a connection of its own.
	if n := strings.Count(a.Log(), "connection opened"); n != opened {
		t.Fatalf("%d new SSH connections while the master was up", n-opened)
	}
	if st := c.MustRun("mux", "status", a.Host()); !strings.Contains(st, "lent so far") {
		t.Fatalf("status: %q", st)
	}
	if muxMaster(c, a.Host()) != pid {
		t.Fatal("the master changed")
	}

	// stop: the master goes, commands connect directly and start a new one.
	if out := c.MustRun("mux", "stop", a.Host()); !strings.Contains(out, "master stopped") {
		t.Fatalf("stop: %q", out)
	}
	if alive(pid) {
		WaitFor(t, 10*time.Second, "the master to exit", func() bool { return !alive(pid) })
	}
	if r := c.Run("mux", "status", a.Host()); r.Code != 255 {
		t.Fatalf("status after stop: %d %q", r.Code, r.Stdout)
	}
	if out := c.MustRun("invoke", addr, "echo $x"); out != "42\n" {
		t.Fatalf("after stop: %q", out)
	}
	WaitFor(t, 10*time.Second, "a new master", func() bool { pid = muxMaster(c, a.Host()); return pid > 0 })
	pids = append(pids, pid)

	// The agent is killed and restarts: the master's connection breaks, it exits, and
	// the next command falls back to a direct connection silently.
	a.Kill9()
	a.Restart()
	WaitFor(t, 10*time.Second, "the master to notice", func() bool { return !alive(pid) })
	r = c.Run("invoke", addr, "echo $x")
	if r.Code != 0 || r.Stdout != "42\n" || r.Stderr != "" {
		t.Fatalf("after the agent restarted: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	WaitFor(t, 10*time.Second, "a master again", func() bool { pid = muxMaster(c, a.Host()); return pid > 0 })
	pids = append(pids, pid)

	// A graceful stop (systemctl stop, tether serve --stop) with the master
	// up: the agent closes the master's idle connection instead of waiting
	// for it (Term fails after 10 s), the master exits with it, and after
	// the restart the next command starts over.
	a.Term()
	WaitFor(t, 10*time.Second, "the master to exit with the agent's stop", func() bool { return !alive(pid) })
	a.Restart()
	if out := c.MustRun("invoke", addr, "echo $x"); out != "42\n" {
		t.Fatalf("after a graceful restart: %q", out)
	}
	WaitFor(t, 10*time.Second, "a master after the graceful restart", func() bool { pid = muxMaster(c, a.Host()); return pid > 0 })
	pids = append(pids, pid)
}

func TestControlPersistIdleExit(t *testing.T) {
	a, c := setup(t)
	c.Env = []string{"TETHER_CONTROL_PERSIST=1s"}
	var pids []int
	stopMasters(t, c, a.Host(), &pids)
	// The master is looked for while a command holds it busy: once idle
	// it has only a second, which a loaded machine can spend before the
	// first look.
	done := filepath.Join(ShortTempDir(t), "done")
	cmd := c.Command(context.Background(), "invoke", a.Host(), "until [ -e "+done+" ]; do sleep 0.02; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	WaitFor(t, 10*time.Second, "a master", func() bool { pid = muxMaster(c, a.Host()); return pid > 0 })
	pids = append(pids, pid)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("invoke through the master: %v", err)
	}
	// The master exits by itself once idle (a status request counts as a
	// client for a moment).
	WaitFor(t, 10*time.Second, "the idle master to exit", func() bool { return !alive(pid) })
	if r := c.Run("mux", "status", a.Host()); r.Code != 255 {
		t.Fatalf("status after idle exit: %d %q", r.Code, r.Stdout)
	}
	// Keys are loaded only for a direct connection; a key that cannot be
	// loaded fails at once, as without a master.
	if r := c.Run("-i", c.Key+".missing", "invoke", a.Host(), "true"); r.Code != 255 || !strings.Contains(r.Stderr, ".missing") {
		t.Fatalf("missing key: %d %q", r.Code, r.Stderr)
	}
	if pid := muxMaster(c, a.Host()); pid != 0 {
		t.Fatalf("a master (%d) was started without a connection", pid)
	}
	// A bad setting is an error, not silently ignored.
	c.Env = []string{"TETHER_CONTROL_PERSIST=soon"}
	if r := c.Run("invoke", a.Host(), "true"); r.Code != 255 || !strings.Contains(r.Stderr, "TETHER_CONTROL_PERSIST") {
		t.Fatalf("bad setting: %d %q", r.Code, r.Stderr)
	}
}
