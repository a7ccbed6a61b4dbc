package limits

import (
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

	"github.com/tether-sh/tether/internal/tstest"
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

// testID is a fresh group id.
func testID() GroupID {
	return GroupID{UID: os.Getuid(), User: "limits-test", Session: fmt.Sprintf("s%d-%d", os.Getpid(), groupSeq.Add(1)), StateDir: "/nonexistent/limits-test"}
}

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
	g, err := Create(m, testID(), -1, -1, spec)
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
	stderr tstest.SyncBuffer
	done   chan struct{}
	err    error
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
	pids, err := readPids(filepath.Join(c.pids, "cmds", "cgroup.procs"))
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
		if _, err := OpenName(Cgroup1, n); err == nil {
			t.Errorf("OpenName(%q) accepted", n)
		}
	}
	if _, err := Create("cgroup3", testID(), -1, -1, Spec{}); err == nil {
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
	// way the group never holds more than 5, plus the one slot cgroup v1
	// keeps for the session host's starting thread (cg1.update).
	tstest.WaitFor(t, 20*time.Second, "the fork bomb to stop forking", func() bool {
		select {
		case <-bomb.done:
			return true
		default:
		}
		_, hits, _ := g.Events()
		return hits > 0 && len(cgProcs(t, g)) <= 5+1
	})
	if n := len(cgProcs(t, g)); n > 5+1 {
		t.Errorf("%d processes in the group, limit 5", n)
	}
	if n := len(sessionProcs(t, bomb.cmd.Process.Pid)); n > 5+1 {
		t.Errorf("%d processes of the fork bomb alive, limit 5", n)
	}
	_, hits, err := g.Events()
	if err != nil || hits == 0 {
		t.Errorf("Events: pidsMaxHits %d, err %v; want > 0", hits, err)
	}
	t.Logf("pidsMaxHits %d; bomb stderr: %.200q", hits, bomb.stderr.String())
	tstest.WaitFor(t, 10*time.Second, "the outside shell's 20 sleeps", func() bool {
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
	tstest.WaitFor(t, 10*time.Second, "two sleeps", func() bool { return len(sessionProcs(t, cmd.Process.Pid)) == 3 })
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
	tstest.WaitFor(t, 10*time.Second, "3 processes in the group", func() bool { return len(cgProcs(t, g)) == 3 })
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
	o, err := OpenName(Cgroup1, g.Name())
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
	if _, err := OpenName(Cgroup1, "no-such-group"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing group: %v", err)
	}
}

// TestCgroup1UserMovesOwnChild: the session host runs as the session's user;
// Create's chown lets it move its own children in, and nothing more.
func TestCgroup1UserMovesOwnChild(t *testing.T) {
	needCgroup1(t)
	const nobody = 65534
	g, err := Create(Cgroup1, testID(), nobody, nobody, Spec{MaxProcesses: 10, MaxMemoryBytes: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Destroy() })
	c := g.b.(cg1)
	script := fmt.Sprintf(`sleep 30 & echo $! > %s/cgroup.procs && echo $! > %s/cgroup.procs && echo moved;
{ echo 999999999 > %s/memory.limit_in_bytes; } 2>/dev/null && echo raised;
{ echo 999999999 > %s/memory.limit_in_bytes; } 2>/dev/null && echo raised; kill $!`, c.mem+"/cmds", c.pids+"/cmds", c.mem+"/cmds", c.mem)
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
	// The soft limit only: the hard one stays, so a later Update can
	// raise it for a process that lives on (a bash session's bash).
	if got, want := strings.Fields(asLimit(t, sh.cmd.Process.Pid))[0], strconv.FormatInt(asBackstop(64<<20), 10); got != want {
		t.Errorf("soft RLIMIT_AS %q, want %q", got, want)
	}
	shell := startGated(t, "exec sleep 300") // lives across the Update
	if err := g.Add(shell.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	if err := sh.wait(t, 30*time.Second); err == nil {
		t.Error("allocating 200 MB under RLIMIT_AS 64 MB succeeded")
	}
	t.Logf("stderr: %s", sh.stderr.String())

	// Update: new processes get the new limit, and the live one too
	// (without CAP_SYS_RESOURCE: only its soft limit moves).
	if err := g.Update(Spec{MaxMemoryBytes: 512 << 20}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(asLimit(t, shell.cmd.Process.Pid))[0], strconv.FormatInt(asBackstop(512<<20), 10); got != want {
		t.Errorf("a live process after Update: soft RLIMIT_AS %q, want %q", got, want)
	}
	shell.release(t)
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
	tstest.WaitFor(t, 20*time.Second, "the monitor's memory kill", func() bool {
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
	tstest.WaitFor(t, 20*time.Second, "at most 5 processes after the loop", func() bool {
		_, hits, _ := g.Events()
		return hits >= 45-5 && len(sessionProcs(t, bomb.cmd.Process.Pid)) <= 5
	})
	// Stable: nothing new survives.
	time.Sleep(3 * MonitorSlow)
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

// Group names are unambiguous: user "john" + session "smith.work" and user
// "john.smith" + session "work" got the same cgroup once; and they tell
// other users neither name.
func TestGroupNamesUnambiguous(t *testing.T) {
	a := GroupID{UID: 1001, User: "john", Session: "smith.work", StateDir: "/var/lib/tether"}
	b := GroupID{UID: 1002, User: "john.smith", Session: "work", StateDir: "/var/lib/tether"}
	if a.Name() == b.Name() {
		t.Fatalf("%+v and %+v share group %s", a, b, a.Name())
	}
	// Even with one uid (the same user under two names is not possible,
	// but the hash alone must separate them).
	b.UID = a.UID
	if a.Name() == b.Name() {
		t.Fatalf("same uid: %+v and %+v share group %s", a, b, a.Name())
	}
	c := a
	c.StateDir = "/var/lib/tether2"
	if a.Name() == c.Name() {
		t.Error("two agents' state directories share a group name")
	}
	if a.Name() != a.Name() || !validName(a.Name()) {
		t.Errorf("name %q not stable or not valid", a.Name())
	}
	if re := regexp.MustCompile(`^u1001-[0-9a-f]{16}$`); !re.MatchString(a.Name()) {
		t.Errorf("name %q, want u<uid>-<16 hex>", a.Name())
	}
	for _, s := range []string{"john", "smith", "work"} {
		if strings.Contains(a.Name(), s) {
			t.Errorf("name %q shows %q", a.Name(), s)
		}
	}
}

// A group that exists and holds processes is never reused or given to the
// newcomer: Create fails with ErrExists and leaves it as it was. An empty
// leftover is made anew.
func TestCgroup1CreateRefusesExisting(t *testing.T) {
	needCgroup1(t)
	id := testID()
	spec := Spec{MaxProcesses: 7, MaxMemoryBytes: 100 << 20}
	g, err := Create(Cgroup1, id, -1, -1, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Destroy() })
	sh := startGated(t, "")
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	if _, err := Create(Cgroup1, id, nobody, nobody, Spec{MaxProcesses: 1000}); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over a live group: %v, want ErrExists", err)
	}
	c := g.b.(cg1)
	for _, f := range []string{filepath.Join(c.pids, "cmds", "cgroup.procs"), filepath.Join(c.mem, "host", "tasks")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == nobody {
			t.Errorf("%s was given to the newcomer", f)
		}
	}
	if s, _ := g.Spec(); s != spec {
		t.Errorf("the live group's limits changed to %+v", s)
	}
	if got := cgProcs(t, g); !slices.Contains(got, sh.cmd.Process.Pid) {
		t.Errorf("the live group lost its process: %v", got)
	}

	// An empty leftover (its session ended while no agent ran).
	id2 := testID()
	if _, err := Create(Cgroup1, id2, -1, -1, spec); err != nil {
		t.Fatal(err)
	}
	g2, err := Create(Cgroup1, id2, -1, -1, Spec{MaxProcesses: 3})
	if err != nil {
		t.Fatalf("Create over an empty leftover: %v", err)
	}
	t.Cleanup(func() { g2.Destroy() })
	if s, _ := g2.Spec(); s.MaxProcesses != 3 {
		t.Errorf("leftover not made anew: %+v", s)
	}
}

// startBorn starts script the way the session host does: PrepareStart on
// the starting goroutine, Start, then Add (AfterStart).
func startBorn(t *testing.T, g *Group, script string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	errc := make(chan error, 1)
	go func() { // a goroutine of its own, as runspace's
		if err := g.PrepareStart(cmd); err != nil {
			errc <- err
			return
		}
		if err := cmd.Start(); err != nil {
			g.EndCommand()
			errc <- err
			return
		}
		errc <- g.Add(cmd.Process.Pid)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Reaped by the caller or by this cleanup, never both at once (Wait is
	// not safe for concurrent use).
	var once sync.Once
	wait := func() { once.Do(func() { cmd.Wait() }) }
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); wait() })
	return cmd, wait
}

// A program that forks at once escaped the group in cgroup v1 (it was moved
// in after it started; 40 processes with a limit of 10). Born inside, its
// children are counted from the first.
func TestCgroup1BornInside(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxProcesses: 10})
	cmd, wait := startBorn(t, g, "for i in $(seq 40); do sleep 30 & done; wait")
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	max := 0
	tstest.WaitFor(t, 20*time.Second, "the forks to stop", func() bool {
		n := len(sessionProcs(t, cmd.Process.Pid))
		if n > max {
			max = n
		}
		_, hits, _ := g.Events()
		select {
		case <-done:
			return true
		default:
		}
		return hits > 0 && n <= 11
	})
	if n := len(sessionProcs(t, cmd.Process.Pid)); n > max {
		max = n
	}
	if max > 10+1 {
		t.Errorf("%d processes of the loop at once, limit 10", max)
	}
	for _, p := range sessionProcs(t, cmd.Process.Pid) {
		if !g.b.(cg1).inCmds(p.pid) {
			t.Errorf("process %d outside cmds/", p.pid)
		}
	}
	// The starting thread went home: the test process is not in cmds/.
	if g.b.(cg1).inCmds(os.Getpid()) {
		t.Error("this process is in cmds/")
	}
	b, _ := os.ReadFile(filepath.Join(g.b.(cg1).pids, "cmds", "tasks"))
	for _, f := range strings.Fields(string(b)) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%s", os.Getpid(), f)); err == nil {
			t.Errorf("thread %s of this process left in cmds/", f)
		}
	}
}

// The session host is inside the session's bound: what it allocates itself
// (shell builtins) is limited too, by MaxMemoryBytes + HostMemoryReserve.
func TestCgroup1HostInsideBound(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxMemoryBytes: 32 << 20, MaxProcesses: 10})
	host := startGated(t, alloc200)
	if err := g.AddHost(host.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	c := g.b.(cg1)
	if pids, _ := readPids(filepath.Join(c.mem, "host", "cgroup.procs")); !slices.Contains(pids, host.cmd.Process.Pid) {
		t.Fatalf("AddHost: host/ holds %v", pids)
	}
	host.release(t)
	err := host.wait(t, 30*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+9 {
		t.Errorf("200 MB in the session host's part of a 32 MB (+%d MB) group: %v, want exit 137", HostMemoryReserve>>20, err)
	}
	if oom, _, _ := g.Events(); oom == 0 {
		t.Error("the kill is not counted")
	}
	if m, _ := readInt(filepath.Join(c.mem, "memory.limit_in_bytes")); m != 32<<20+HostMemoryReserve {
		t.Errorf("group memory limit %d", m)
	}
	if p, _ := readInt(filepath.Join(c.pids, "pids.max")); p != 2*10+HostTaskReserve {
		t.Errorf("group pids.max %d", p)
	}
}

// TestCgroup2BornInside: clone3(CLONE_INTO_CGROUP) through PrepareStart,
// in whatever cgroup2 mount there is (controllers are not needed for where
// a process is born).
func TestCgroup2BornInside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	mnt, err := v2Dir()
	if err != nil || mnt == "" || !clone3Works() {
		t.Skipf("no cgroup2 mount or clone3 (err=%v)", err)
	}
	name := testID().Name()
	c := cg2{dir: filepath.Join(mnt, parentName, name), fd: &cmdsFD{fd: -1}}
	for _, d := range []string{filepath.Dir(c.dir), c.dir, c.host(), c.cmds()} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			t.Skipf("cannot make %s: %v", d, err)
		}
	}
	t.Cleanup(func() {
		killAndRemove([]string{filepath.Join(c.cmds(), "cgroup.procs")}, []string{c.cmds(), c.host(), c.dir})
		os.Remove(filepath.Dir(c.dir))
	})
	g := &Group{mech: Cgroup2, name: name, b: c}
	cmd, _ := startBorn(t, g, "sleep 30 & cat /proc/self/cgroup; wait")
	_ = cmd
	if !c.inCmds(cmd.Process.Pid) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
		t.Errorf("not born in %s: %s", c.cmds(), b)
	}
	if c.inCmds(os.Getpid()) {
		t.Error("this process moved into cmds/")
	}
}

// An idle fallback session does no /proc scans: the monitor scans only
// while the session has live processes and then sleeps with no timer.
func TestRlimitIdleNoScans(t *testing.T) {
	needRlimit(t)
	g := newGroup(t, Rlimit, Spec{MaxProcesses: 10, MaxMemoryBytes: 64 << 20})
	m := g.b.(*monitor)
	if n, _ := m.state(); n != 0 || m.started {
		t.Fatalf("before any process: %d scans, started %v", n, m.started)
	}
	sh := startGated(t, "sleep 0.2")
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	tstest.WaitFor(t, 20*time.Second, "some scans while the command lives", func() bool {
		n, _ := m.state()
		return n > 0
	})
	sh.wait(t, 20*time.Second)
	tstest.WaitFor(t, 20*time.Second, "the monitor to go to sleep", func() bool {
		_, asleep := m.state()
		return asleep
	})
	n0, _ := m.state()
	time.Sleep(4 * MonitorSlow)
	if n, asleep := m.state(); n != n0 || !asleep {
		t.Errorf("idle: %d scans became %d (asleep %v); want none", n0, n, asleep)
	}
	// The next command wakes it.
	sh = startGated(t, "sleep 0.2")
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	tstest.WaitFor(t, 20*time.Second, "a scan after the next Add", func() bool {
		n, _ := m.state()
		return n > n0
	})
}

// In the fallback the memory limit is the monitor's, with the
// MaxMemoryPerShellMB message (Events), not a bare allocation failure under
// RLIMIT_AS.
func TestRlimitMemoryNamedLimit(t *testing.T) {
	needRlimit(t)
	g := newGroup(t, Rlimit, Spec{MaxMemoryBytes: 64 << 20})
	before, _ := g.Counters()
	sh := startGated(t, alloc200)
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sh.release(t)
	err := sh.wait(t, 30*time.Second)
	after, _ := g.Counters()
	lines := Explain(before, after, Spec{MaxMemoryBytes: 64 << 20})
	if len(lines) != 1 || !strings.Contains(lines[0], "MaxMemoryPerShellMB (64)") {
		t.Errorf("200 MB under 64 MB: %v, stderr %q; Explain %q, want the MaxMemoryPerShellMB line", err, sh.stderr.String(), lines)
	}
}

// TestRlimitIdleShellNoScans: a session's long-lived shell (SetShell, a
// bash that lives as long as the session) does not keep the fallback's
// monitor scanning once its command ended; Wake at the next command does,
// until EndCommand, and a process the shell runs keeps it going. (100 idle
// bash sessions scanned /proc every 500 ms: 146 % of a core.)
func TestRlimitIdleShellNoScans(t *testing.T) {
	needRlimit(t)
	g := newGroup(t, Rlimit, Spec{MaxProcesses: 10, MaxMemoryBytes: 64 << 20})
	m := g.b.(*monitor)
	shell := startGated(t, "exec sleep 300") // stands for the session's bash (one process)
	if err := g.Add(shell.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	g.SetShell(shell.cmd.Process.Pid)
	shell.release(t)
	tstest.WaitFor(t, 20*time.Second, "the monitor to sleep with only the shell alive", func() bool {
		_, asleep := m.state()
		return asleep
	})
	n0, _ := m.state()
	time.Sleep(4 * MonitorSlow)
	if n, asleep := m.state(); n != n0 || !asleep {
		t.Fatalf("idle shell: %d scans became %d (asleep %v); want none", n0, n, asleep)
	}
	g.Wake()
	tstest.WaitFor(t, 20*time.Second, "scans while a command runs", func() bool {
		n, _ := m.state()
		return n > n0+2 // several: Wake keeps it scanning until EndCommand
	})
	g.EndCommand()
	tstest.WaitFor(t, 20*time.Second, "the monitor to sleep after the command", func() bool {
		_, asleep := m.state()
		return asleep
	})
}
