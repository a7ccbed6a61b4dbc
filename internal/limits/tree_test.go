package limits

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

// scanCounts reads the monitor's full and tree scans.
func scanCounts(m *monitor) (full, tree int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fullScans, m.treeScans
}

// noFullScans makes the monitor's tree scans take any number of new pids,
// so a test sees what they find (a full scan would find everything).
func noFullScans(m *monitor) {
	m.mu.Lock()
	m.entries = 1 << 30
	m.mu.Unlock()
}

// treeScanned is a rlimit-fallback group of MaxProcesses max with a gated
// shell running script added to it; it skips where tree scans cannot run.
func treeScanned(t *testing.T, max int, script string) (*Group, *monitor, *gated) {
	t.Helper()
	needRlimit(t)
	if !treeScans() {
		t.Skip("no /proc/PID/task/TID/children or ns_last_pid here")
	}
	g := newGroup(t, Rlimit, Spec{MaxProcesses: max})
	sh := startGated(t, script)
	if err := g.Add(sh.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return g, g.b.(*monitor), sh
}

// afterFirstFullScan turns full scans off (noFullScans) and waits for the
// monitor's first scan, a full one: Add's scan came before the shell's
// process group was the session's. It returns the full scans so far.
func afterFirstFullScan(t *testing.T, m *monitor) int {
	t.Helper()
	noFullScans(m)
	tstest.WaitFor(t, 20*time.Second, "the monitor's first scan", func() bool {
		full, _ := scanCounts(m)
		return full >= 2
	})
	full, _ := scanCounts(m)
	return full
}

// TestRlimitTreeScanOrphans: background jobs whose parent exited at once
// (reparented to init, out of the session host's tree) are found by the
// tree scans among the pids allocated since the last scan, by their process
// group, and the newest over MaxProcesses are killed.
func TestRlimitTreeScanOrphans(t *testing.T) {
	g, m, sh := treeScanned(t, 4, "for i in 1 2 3 4 5 6; do (sleep 30 2>/dev/null &); done; exec sleep 30 2>/dev/null")
	full0 := afterFirstFullScan(t, m)
	sh.release(t)
	tstest.WaitFor(t, 20*time.Second, "at most 4 processes of the shell's group", func() bool {
		_, hits, _ := g.Events()
		return hits >= 3 && len(sessionProcs(t, sh.cmd.Process.Pid)) <= 4
	})
	full, tree := scanCounts(m)
	if full != full0 || tree == 0 {
		t.Errorf("full scans %d → %d, tree scans %d: want the tree scans to have found them", full0, full, tree)
	}
}

// TestRlimitTreeScanFollowsKnown: processes a tree scan saw below the shell
// still count once the shell exits and they are reparented away (their pids
// are older than the last scan): Update to a lower MaxProcesses kills down
// to it.
func TestRlimitTreeScanFollowsKnown(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "go")
	g, m, sh := treeScanned(t, 20, "for i in 1 2 3 4 5 6; do sleep 30 2>/dev/null & done; while [ ! -e "+gate+" ]; do sleep 0.02; done")
	full0 := afterFirstFullScan(t, m)
	sh.release(t)
	tstest.WaitFor(t, 20*time.Second, "a scan that saw the shell's six sleeps", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.known) >= 7
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sh.wait(t, 20*time.Second)
	if n := len(sessionProcs(t, sh.cmd.Process.Pid)); n != 6 {
		t.Fatalf("%d processes in the shell's group after it exited, want its 6 sleeps", n)
	}
	if err := g.Update(Spec{MaxProcesses: 3}); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 20*time.Second, "the orphans cut to 3", func() bool {
		_, hits, _ := g.Events()
		return hits >= 3 && len(sessionProcs(t, sh.cmd.Process.Pid)) <= 3
	})
	if full, tree := scanCounts(m); full != full0 || tree == 0 {
		t.Errorf("full scans %d → %d, tree scans %d: want the tree scans to have followed them", full0, full, tree)
	}
}

// TestNewPids: the kernel's cyclic order, and the bound.
func TestNewPids(t *testing.T) {
	if !treeScans() {
		t.Skip("no ns_last_pid here")
	}
	var got []int
	if !newPids(pidMax-2, 2, 10, func(p int) { got = append(got, p) }) {
		t.Fatal("a span of 4 refused")
	}
	if want := []int{pidMax - 1, pidMax, 1, 2}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("newPids across pid_max = %v, want %v", got, want)
	}
	if newPids(100, 200, 50, func(int) { t.Error("called past the bound") }) {
		t.Error("a span of 100 taken under a bound of 50")
	}
	if isProcess(os.Getpid()) != true {
		t.Error("this process is not a process")
	}
}

// TestRlimitWakeSkipsIdlePids: after the monitor slept with the shell alone,
// Wake starts the next scan's new pids from now if the shell has not run
// since (nothing can have been born in the session), and not if it has.
func TestRlimitWakeSkipsIdlePids(t *testing.T) {
	g, m, shell := treeScanned(t, 10, "exec sleep 300") // the shell stands for the session's bash
	g.SetShell(shell.cmd.Process.Pid)
	shell.release(t)
	// asleep waits for the monitor to sleep after a scan later than the
	// scans-th (a Wake's poke may not have been taken yet).
	asleep := func(scans int) {
		tstest.WaitFor(t, 20*time.Second, "the monitor to sleep with only the shell alive", func() bool {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.scans > scans && m.asleep && m.quiet && m.quietRuns > 0
		})
	}
	// The shell reads its go and execs sleep: the monitor's quiet mark
	// must come from a scan after that, or the exec's own run counts as
	// the shell having run (and maybe forked) since (a loaded machine
	// let the first scan come between).
	pid := shell.cmd.Process.Pid
	tstest.WaitFor(t, 20*time.Second, "the shell to sleep as sleep", func() bool {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		i := bytes.LastIndexByte(stat, ')')
		return string(comm) == "sleep\n" && i >= 0 && i+2 < len(stat) && stat[i+2] == 'S'
	})
	scans0, _ := m.state()
	asleep(scans0)
	lastPid := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.lastPid
	}
	// Pids handed out elsewhere while the session is idle.
	for i := 0; i < 5; i++ {
		if err := exec.Command("true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	before, after := lastPid(), 0
	now, err := readLastPid()
	if err != nil {
		t.Fatal(err)
	}
	scans, _ := m.state()
	g.Wake()
	if after = lastPid(); after == before || after < now && now-after < pidMax/2 {
		t.Errorf("Wake with the shell idle: last pid %d → %d, want ≥ %d", before, after, now)
	}
	g.EndCommand()
	asleep(scans)
	// The shell runs (stopped and continued: it is on a CPU to stop): it
	// may have forked, so the scan looks at the pids since its last scan.
	syscall.Kill(shell.cmd.Process.Pid, syscall.SIGSTOP)
	syscall.Kill(shell.cmd.Process.Pid, syscall.SIGCONT)
	tstest.WaitFor(t, 20*time.Second, "the shell to have run", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		runs, ok := timeslices(m.shell)
		return ok && runs != m.quietRuns
	})
	for i := 0; i < 5; i++ {
		exec.Command("true").Run()
	}
	before = lastPid()
	g.Wake()
	if after = lastPid(); after != before {
		t.Errorf("Wake after the shell ran: last pid %d → %d, want it kept", before, after)
	}
	g.EndCommand()
}
