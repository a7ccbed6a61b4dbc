package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Attacks on the session limits (issue 11): cgroup names that collide
// across users, builtins that grow the session host past the memory limit,
// and a program that forks before it is put in its group.

// hostPID is the session host's pid, from its meta.json.
func hostPID(t *testing.T, a *Agent, user, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.State, "s", user, name, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.PID == 0 {
		t.Fatalf("meta.json %q: %v", b, err)
	}
	return m.PID
}

// sessionProcs counts the live processes of a session host's process session
// (every command and background job of the session; the host not counted).
func sessionProcs(host int) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == host {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 3 && f[0] != "Z" && f[3] == strconv.Itoa(host) {
			n++
		}
	}
	return n
}

// statusKB reads a "Key: N kB" line of /proc/PID/status.
func statusKB(pid int, key string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// User "tt-jo" with session "smith.work" and user "tt-jo.smith" with session
// "work" got one cgroup ("tt-jo.smith.work.<hash>"): the second reused the
// first's and took it over, and removing the second session SIGKILLed the
// first user's commands. Names are now u<uid>-<hash>: two groups, and the
// directory names show neither user nor session.
func TestAttackCgroupNamesCollide(t *testing.T) {
	a1 := EnsureUser(t, "tt-jo")
	a2 := EnsureUser(t, "tt-jo.smith")
	jo, jos := NewClient(t), NewClient(t)
	jo.User, jos.User = a1.Name, a2.Name
	a1.Authorize(t, jo.PubKey())
	a2.Authorize(t, jos.PubKey())
	a := StartAgent(t, AgentOptions{AuthorizedKeys: "%h/.ssh/authorized_keys"})
	if !strings.Contains(a.Log(), "cgroup") {
		t.Skip("the agent does not use cgroups here (not root, or none writable)")
	}
	victim := strings.TrimSpace(jo.MustRun("new", "--name", "smith.work", a.Host()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	long := jo.Command(ctx, "invoke", victim, "sleep 300; echo slept")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	defer long.Process.Kill()
	vhost := hostPID(t, a, a1.Name, "smith.work")
	// The sleep, and the session's bash when it is one.
	want := 1
	if !BuiltinShell() {
		want = 2
	}
	WaitFor(t, 20*time.Second, "the victim's sleep", func() bool { return sessionProcs(vhost) == want })

	other := strings.TrimSpace(jos.MustRun("new", "--name", "work", a.Host()))
	jos.MustRun("invoke", other, "true")
	jos.MustRun("remove", other)

	if n := sessionProcs(vhost); n != want {
		t.Errorf("the other user's remove killed the victim's command (%d processes left, want %d: its sleep, and bash)", n, want)
	}
	if err := syscall.Kill(vhost, 0); err != nil {
		t.Errorf("the victim's session host after the other's remove: %v", err)
	}
	for _, ctl := range []string{"memory", "pids"} {
		ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctl, "tether"))
		for _, e := range ents {
			if strings.Contains(e.Name(), "tt-jo") {
				t.Errorf("cgroup %s/tether/%s shows a user or session name", ctl, e.Name())
			}
		}
	}
}

// Shell builtins run in the session host: a string-doubling loop grew it
// to 6.7× MaxMemoryPerShellMB, outside the session's cgroup. Now the command
// is stopped with the limit's message, the session lives on, and the
// session host never got near the bound.
func TestAttackBuiltinMemory(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxMemoryPerShellMB", "64")
	addr := strings.TrimSpace(c.MustRun("new", "--name", "dbl", a.Host()))
	c.MustRun("invoke", addr, "kept=yes")
	host := hostPID(t, a, c.User, "dbl")
	r := c.Run("invoke", addr, `s=x; for i in $(seq 1 27); do s=$s$s; done; echo ${#s}`)
	if r.Code == 0 || strings.Contains(r.Stdout, "134217728") || !strings.Contains(r.Stderr, "MaxMemoryPerShellMB (64)") {
		t.Errorf("a 128 MiB string in a 64 MB session: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// The bound is MaxMemoryPerShellMB + limits.HostMemoryReserve (96 MiB)
	// for the session host and its commands together; the watch stops the
	// loop well before it (how far before depends on when the watch is
	// scheduled between two doublings).
	hwm := statusKB(host, "VmHWM") << 10
	t.Logf("session host peak resident memory: %d MiB", hwm>>20)
	if hwm > (64+96)<<20 {
		t.Errorf("the session host's peak resident memory is %d MiB, over the session's bound", hwm>>20)
	}
	// A background subshell is the session host's too.
	r = c.Run("invoke", addr, `( s=x; for i in $(seq 1 27); do s=$s$s; done; echo ${#s} ) & wait`)
	if strings.Contains(r.Stdout, "134217728") || !strings.Contains(r.Stderr, "MaxMemoryPerShellMB (64)") {
		t.Errorf("the same in a background subshell: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := c.MustRun("invoke", addr, "unset s; echo $kept"); got != "yes\n" {
		t.Fatalf("the session after the builtin loops: %q", got)
	}
}

// cgroup v1: a program that forks at once escaped before it was moved into
// the session's group, and its children stayed outside for good (40
// processes with a limit of 10). Commands are now born inside their group.
func TestAttackForkAtOnce(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxProcessesPerShell", "10")
	addr := strings.TrimSpace(c.MustRun("new", "--name", "forks", a.Host()))
	host := hostPID(t, a, c.User, "forks")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Forty double forks at once (each sleep is reparented at once, so
	// moving the shell and its children after the start misses them).
	cmd := c.Command(ctx, "invoke", addr, "sh -c '"+strings.Repeat("(sleep 30 &); ", 40)+"sleep 30'")
	var stderr SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if strings.Contains(a.Log(), "rlimit") {
		// The fallback (agent not root) polls: the count may pass the
		// limit for a moment, then the monitor kills the newest.
		seen := false
		WaitFor(t, 20*time.Second, "the monitor to bring the session down to 10", func() bool {
			n := sessionProcs(host)
			seen = seen || n > 0
			return seen && n <= 10
		})
		c.Run("remove", addr)
		return
	}
	most := 0
	// Sample until the shell's forks fail (dash says "Cannot fork") or all
	// forty are there.
	WaitFor(t, 20*time.Second, "the loop to stop forking", func() bool {
		n := sessionProcs(host)
		most = max(most, n)
		return strings.Contains(stderr.String(), "fork") || n >= 41
	})
	for i := 0; i < 50; i++ {
		most = max(most, sessionProcs(host))
	}
	// 10, and in cgroup v1 one more slot: the session host's starting
	// thread is in the commands' group for the instant of a fork.
	if most > 10+1 {
		t.Errorf("%d processes in a session with MaxProcessesPerShell 10", most)
	}
	c.Run("remove", addr)
}
