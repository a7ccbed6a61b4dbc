package limits

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain removes the tether/ parent cgroups the tests made (only when they
// did not exist before and are empty).
func TestMain(m *testing.M) {
	var parents []string
	if mem, pids, err := v1Dirs(); err == nil {
		for _, d := range []string{mem, pids} {
			if d != "" {
				parents = append(parents, filepath.Join(d, parentName))
			}
		}
	}
	if d, err := v2Dir(); err == nil && d != "" {
		parents = append(parents, filepath.Join(d, parentName))
	}
	var ours []string
	for _, p := range parents {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			ours = append(ours, p)
		}
	}
	code := m.Run()
	for _, p := range ours {
		os.Remove(p)
	}
	os.Exit(code)
}

var groupSeq atomic.Int32

// needCgroup1 skips unless this test can make cgroup v1 groups.
func needCgroup1(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroup tests need root (the agent's privilege); run as root to test cgroup v1")
	}
	mem, pids, err := v1Dirs()
	if err != nil || mem == "" || pids == "" {
		t.Skipf("no cgroup v1 memory and pids hierarchies on this host (err=%v)", err)
	}
	if !canCreateUnder(mem, "") || !canCreateUnder(pids, "") {
		t.Skip("cgroup v1 hierarchies not writable here")
	}
}

// newGroup creates a uniquely named group destroyed when the test ends.
func newGroup(t *testing.T, m Mechanism, spec Spec) *Group {
	t.Helper()
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), groupSeq.Add(1))
	g, err := Create(m, name, -1, -1, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Destroy(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	t.Logf("group: %s", g.Describe())
	return g
}

// gated is a shell that runs script once released (so the test can add it
// to a group before it forks anything).
type gated struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startGated(t *testing.T, script string) *gated {
	t.Helper()
	g := &gated{done: make(chan struct{})}
	g.cmd = exec.Command("/bin/sh", "-c", "read _ || exit 9; "+script)
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g.cmd.Stderr = &g.stderr
	var err error
	if g.in, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.err = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		// The shell's process group and any stragglers of it.
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.done
	})
	return g
}

func (g *gated) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(g.in, "go\n"); err != nil {
		t.Fatal(err)
	}
	g.in.Close()
}

func (g *gated) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-g.done:
		return g.err
	case <-time.After(d):
		t.Fatalf("shell %d still running after %v", g.cmd.Process.Pid, d)
		return nil
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// session lists the live processes of a gated shell: it and its process
// group, and its descendants.
func sessionProcs(t *testing.T, pid int) []proc {
	t.Helper()
	all, err := listProcs()
	if err != nil {
		t.Fatal(err)
	}
	desc := descendants(all, pid)
	var out []proc
	for _, p := range all {
		if !p.zombie && (p.pid == pid || p.pgrp == pid || slices.Contains(desc, p.pid)) {
			out = append(out, p)
		}
	}
	return out
}

func cgProcs(t *testing.T, g *Group) []int {
	t.Helper()
	c := g.b.(cg1)
	pids, err := readPids(filepath.Join(c.pids, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func TestDetect(t *testing.T) {
	m, why := DetectDetail()
	t.Logf("Detect: %s: %s", m, why)
	if os.Geteuid() != 0 {
		t.Skip("not root: the cgroup expectation below is for a root agent")
	}
	mem, pids, _ := v1Dirs()
	v2, _ := v2Dir()
	v2mem := v2 != "" && slices.Contains(controllers(v2), "memory") && slices.Contains(controllers(v2), "pids")
	switch {
	case v2mem:
		if m != Cgroup2 {
			t.Errorf("Detect = %s, want cgroup2 (cgroup2 at %s has memory and pids)", m, v2)
		}
	case mem != "" && pids != "" && canCreateUnder(mem, "") && canCreateUnder(pids, ""):
		if m != Cgroup1 {
			t.Errorf("Detect = %s, want cgroup1", m)
		}
	default:
		if m != Rlimit {
			t.Errorf("Detect = %s, want rlimit", m)
		}
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b", "../x", "a b", ".hidden", strings.Repeat("x", 300)} {
		if _, err := Create(Rlimit, n, -1, -1, Spec{}); err == nil {
			t.Errorf("Create(%q) accepted", n)
		}
		if _, err := Open(Cgroup1, n); err == nil {
			t.Errorf("Open(%q) accepted", n)
		}
	}
	if _, err := Create("cgroup3", "alice.s1", -1, -1, Spec{}); err == nil {
		t.Error("unknown mechanism accepted")
	}
}

func TestStopMessage(t *testing.T) {
	s := Spec{MaxProcesses: 5, MaxMemoryBytes: 64 << 20}
	if got, want := StopMessage(MemoryLimit, s), "tether: command stopped: session memory limit MaxMemoryPerShellMB (64) reached"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := StopMessage(ProcessLimit, s), "tether: cannot start process: MaxProcessesPerShell (5) reached in this session"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got := Explain(Counters{1, 2}, Counters{2, 2}, s)
	if len(got) != 1 || !strings.Contains(got[0], "memory") {
		t.Errorf("Explain = %q", got)
	}
	if got := Explain(Counters{1, 2}, Counters{1, 2}, s); len(got) != 0 {
		t.Errorf("Explain with no change = %q", got)
	}
	err := error(&LimitError{Limit: ProcessLimit, Spec: s})
	if !errors.Is(err, ErrLimit) || err.Error() != "cannot start process: MaxProcessesPerShell (5) reached in this session" {
		t.Errorf("LimitError: %v", err)
	}
}

func TestCgroup1ForkBomb(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxProcesses: 5})
	bomb := startGated(t, "for i in $(seq 50); do sleep 30 & done; wait")
	// A shell outside the group, forking at the same time, is unaffected.
	outside := startGated(t, "for i in $(seq 20); do sleep 30 & done; echo started >&2; wait")
	if err := g.Add(bomb.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	bomb.release(t)
	outside.release(t)

	// dash gives up ("Cannot fork") once fork fails; bash would retry: either
	// way the group never holds more than 5.
	waitFor(t, 20*time.Second, "the fork bomb to stop forking", func() bool {
		select {
		case <-bomb.done:
			return true
		default:
		}
		_, hits, _ := g.Events()
		return hits > 0 && len(cgProcs(t, g)) <= 5
	})
	if n := len(cgProcs(t, g)); n > 5 {
		t.Errorf("%d processes in the group, limit 5", n)
	}
	if n := len(sessionProcs(t, bomb.cmd.Process.Pid)); n > 5 {
		t.Errorf("%d processes of the fork bomb alive, limit 5", n)
	}
	_, hits, err := g.Events()
	if err != nil || hits == 0 {
		t.Errorf("Events: pidsMaxHits %d, err %v; want > 0", hits, err)
	}
	t.Logf("pidsMaxHits %d; bomb stderr: %.200q", hits, bomb.stderr.String())
	waitFor(t, 10*time.Second, "the outside shell's 20 sleeps", func() bool {
		return len(sessionProcs(t, outside.cmd.Process.Pid)) == 21
	})
	if strings.Contains(outside.stderr.String(), "fork") {
		t.Errorf("outside shell: %s", outside.stderr.String())
	}
}

// alloc200 really allocates 200 MiB: tail keeps a newline-free input in
// memory until EOF.
const alloc200 = "head -c 200m /dev/zero | tail >/dev/null"

func TestCgroup1Memory(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxMemoryBytes: 64 << 20})
	sh := startGated(t, alloc200)
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	err := sh.wait(t, 30*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+9 {
		t.Errorf("allocating 200 MB in a 64 MB group: %v, want exit 137 (tail OOM-killed)", err)
	}
	oom, _, err := g.Events()
	if err != nil || oom == 0 {
		t.Errorf("Events: oomKills %d, err %v; want > 0", oom, err)
	}
	s, _ := g.Spec()
	t.Logf("%s (oomKills %d)", StopMessage(MemoryLimit, s), oom)

	// Update raises the limit live: the same allocation now succeeds.
	if err := g.Update(Spec{MaxMemoryBytes: 512 << 20}); err != nil {
		t.Fatal(err)
	}
	if s, err := g.Spec(); err != nil || s.MaxMemoryBytes != 512<<20 {
		t.Errorf("Spec after Update = %+v, %v", s, err)
	}
	sh = startGated(t, alloc200)
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	if err := sh.wait(t, 30*time.Second); err != nil {
		t.Errorf("200 MB under a 512 MB limit: %v %s", err, sh.stderr.String())
	}
	if oom2, _, _ := g.Events(); oom2 != oom {
		t.Errorf("oomKills went from %d to %d", oom, oom2)
	}
}

func TestCgroup1AddRefusedWhenFull(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxProcesses: 3})
	for i := 0; i < 3; i++ {
		sh := startGated(t, "")
		if err := g.Add(sh.cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	sh := startGated(t, "")
	err := g.Add(sh.cmd.Process.Pid)
	var le *LimitError
	if !errors.As(err, &le) || le.Spec.MaxProcesses != 3 {
		t.Fatalf("4th Add: %v, want a LimitError", err)
	}
	if got := "tether: " + err.Error(); got != StopMessage(ProcessLimit, Spec{MaxProcesses: 3}) {
		t.Errorf("message %q", got)
	}
	if _, hits, _ := g.Events(); hits == 0 {
		t.Error("refused Add not counted in pidsMaxHits")
	}
	// Raising the limit lets it in.
	if err := g.Update(Spec{MaxProcesses: 10}); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

func TestCgroup1AddTakesChildren(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxProcesses: 10})
	sh := startGated(t, "")
	sh.cmd.Process.Kill()
	<-sh.done
	// AfterStart may come after the process forked: Add takes its children.
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	waitFor(t, 10*time.Second, "two sleeps", func() bool { return len(sessionProcs(t, cmd.Process.Pid)) == 3 })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got := cgProcs(t, g); len(got) != 3 {
		t.Errorf("group holds %v, want the shell and its 2 sleeps", got)
	}
	// A process that already exited is not an error.
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Errorf("Add of an exited process: %v", err)
	}
}

func TestCgroup1Destroy(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxProcesses: 10, MaxMemoryBytes: 256 << 20})
	sh := startGated(t, "sleep 300 & sleep 300 & wait")
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	waitFor(t, 10*time.Second, "3 processes in the group", func() bool { return len(cgProcs(t, g)) == 3 })
	c := g.b.(cg1)
	if err := g.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, d := range c.dirs() {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after Destroy (%v)", d, err)
		}
	}
	if err := sh.wait(t, 10*time.Second); err == nil {
		t.Error("shell survived Destroy")
	}
	if n := len(sessionProcs(t, sh.cmd.Process.Pid)); n != 0 {
		t.Errorf("%d processes left after Destroy", n)
	}
	if err := g.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestCgroup1CreateOpen(t *testing.T) {
	needCgroup1(t)
	spec := Spec{MaxProcesses: 7, MaxMemoryBytes: 100 << 20}
	g := newGroup(t, Cgroup1, spec)
	o, err := Open(Cgroup1, g.Name())
	if err != nil {
		t.Fatal(err)
	}
	if o.Describe() != g.Describe() || o.Mechanism() != Cgroup1 || !strings.Contains(o.Describe(), "/tether/"+g.Name()) {
		t.Errorf("Open: %q, Create: %q", o.Describe(), g.Describe())
	}
	if got, err := o.Spec(); err != nil || got != spec {
		t.Errorf("Open(...).Spec() = %+v, %v; want %+v", got, err, spec)
	}
	if err := o.Update(Spec{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.Spec(); got != (Spec{}) {
		t.Errorf("after Update(unlimited): %+v", got)
	}
	// Create again reuses.
	if _, err := Create(Cgroup1, g.Name(), -1, -1, spec); err != nil {
		t.Errorf("Create of an existing group: %v", err)
	}
	if _, err := Open(Cgroup1, "no-such-group"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing group: %v", err)
	}
}

// TestCgroup1UserMovesOwnChild: the session host runs as the session's user;
// Create's chown lets it move its own children in, and nothing more.
func TestCgroup1UserMovesOwnChild(t *testing.T) {
	needCgroup1(t)
	const nobody = 65534
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), groupSeq.Add(1))
	g, err := Create(Cgroup1, name, nobody, nobody, Spec{MaxProcesses: 10, MaxMemoryBytes: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Destroy() })
	c := g.b.(cg1)
	script := fmt.Sprintf(`sleep 30 & echo $! > %s/cgroup.procs && echo $! > %s/cgroup.procs && echo moved;
{ echo 999999999 > %s/memory.limit_in_bytes; } 2>/dev/null && echo raised; kill $!`, c.mem, c.pids, c.mem)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Setpgid: true}
	out, err := cmd.CombinedOutput()
	if got := strings.TrimSpace(string(out)); got != "moved" {
		t.Errorf("as uid %d: %q (%v), want only \"moved\"", nobody, got, err)
	}
	if s, _ := g.Spec(); s.MaxMemoryBytes != 128<<20 {
		t.Errorf("the user changed the limit: %+v", s)
	}
}

func needRlimit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tail"); err != nil {
		t.Skip("no tail")
	}
}

func asLimit(t *testing.T, pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max address space") {
			return strings.Join(strings.Fields(l)[3:5], " ")
		}
	}
	return ""
}

func TestRlimitMemory(t *testing.T) {
	needRlimit(t)
	g := newGroup(t, Rlimit, Spec{MaxMemoryBytes: 64 << 20})
	sh := startGated(t, alloc200)
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got, want := asLimit(t, sh.cmd.Process.Pid), fmt.Sprintf("%d %d", 64<<20, 64<<20); got != want {
		t.Errorf("RLIMIT_AS %q, want %q", got, want)
	}
	sh.release(t)
	if err := sh.wait(t, 30*time.Second); err == nil {
		t.Error("allocating 200 MB under RLIMIT_AS 64 MB succeeded")
	}
	t.Logf("stderr: %s", sh.stderr.String())

	// Update: new processes get the new limit.
	if err := g.Update(Spec{MaxMemoryBytes: 512 << 20}); err != nil {
		t.Fatal(err)
	}
	sh = startGated(t, alloc200)
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	if err := sh.wait(t, 30*time.Second); err != nil {
		t.Errorf("200 MB under 512 MB: %v %s", err, sh.stderr.String())
	}
}

// TestRlimitMonitorMemory: two processes each under RLIMIT_AS but together
// over the session's memory: the monitor kills the bigger one.
func TestRlimitMonitorMemory(t *testing.T) {
	needRlimit(t)
	g := newGroup(t, Rlimit, Spec{MaxMemoryBytes: 64 << 20})
	hold := "{ head -c 40m /dev/zero; sleep 30; } | tail >/dev/null"
	a, b := startGated(t, hold), startGated(t, hold)
	for _, s := range []*gated{a, b} {
		if err := g.Add(s.cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		s.release(t)
	}
	waitFor(t, 20*time.Second, "the monitor's memory kill", func() bool {
		oom, _, _ := g.Events()
		return oom > 0
	})
	var rss int64
	for _, s := range []*gated{a, b} {
		for _, p := range sessionProcs(t, s.cmd.Process.Pid) {
			rss += p.rss
		}
	}
	if rss > 64<<20 {
		t.Errorf("session resident memory %d MB after the kill", rss>>20)
	}
}

func TestRlimitMonitorProcesses(t *testing.T) {
	needRlimit(t)
	g := newGroup(t, Rlimit, Spec{MaxProcesses: 5})
	bomb := startGated(t, "for i in $(seq 50); do sleep 30 & done; wait")
	outside := startGated(t, "for i in $(seq 20); do sleep 30 & done; wait")
	if err := g.Add(bomb.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	bomb.release(t)
	outside.release(t)
	// The monitor polls: the count may pass 5 for an interval, then the
	// newest go.
	waitFor(t, 20*time.Second, "at most 5 processes after the loop", func() bool {
		_, hits, _ := g.Events()
		return hits >= 45-5 && len(sessionProcs(t, bomb.cmd.Process.Pid)) <= 5
	})
	// Stable: nothing new survives.
	time.Sleep(3 * MonitorInterval)
	if n := len(sessionProcs(t, bomb.cmd.Process.Pid)); n > 5 {
		t.Errorf("%d processes alive, limit 5", n)
	}
	if n := len(sessionProcs(t, outside.cmd.Process.Pid)); n != 21 {
		t.Errorf("outside shell: %d processes, want 21 (untouched)", n)
	}
	// The session is full: Add refuses.
	extra := startGated(t, "")
	if err := g.Add(extra.cmd.Process.Pid); !errors.Is(err, ErrLimit) {
		t.Errorf("Add into a full session: %v", err)
	}
	if err := g.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := bomb.wait(t, 10*time.Second); err == nil {
		t.Error("the loop's shell survived Destroy")
	}
	if n := len(sessionProcs(t, bomb.cmd.Process.Pid)); n != 0 {
		t.Errorf("%d processes left after Destroy", n)
	}
}

// The hand-written group name check agrees with the regular expression it
// replaced.
func TestValidNameMatchesRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,200}$`)
	names := []string{"", "a", "_", ".", "..", "-a", ".a", "@a", "+a", "a.b", "root.s1.0a1b2c3d",
		"a@b+c-d_e.f", "a/b", "a b", "a\x00", "é", "a\n", "A9", strings.Repeat("x", 200),
		strings.Repeat("x", 201), strings.Repeat("x", 202), "x" + strings.Repeat(".", 200), "x" + strings.Repeat(".", 201)}
	for c := 0; c < 256; c++ {
		names = append(names, string(rune(c)), "a"+string([]byte{byte(c)}), string([]byte{byte(c)}))
	}
	for _, n := range names {
		if got, want := validName(n), re.MatchString(n); got != want {
			t.Errorf("validName(%q) = %v, the regexp says %v", n, got, want)
		}
	}
}
