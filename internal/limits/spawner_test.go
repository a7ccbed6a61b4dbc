package limits

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

// ourThreadsIn lists the threads of this process in a tasks file.
func ourThreadsIn(t *testing.T, tasks string) []string {
	t.Helper()
	b, err := os.ReadFile(tasks)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range strings.Fields(string(b)) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%s", os.Getpid(), f)); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// The builtin shell starts programs through Group.Start. On cgroup v1 they
// are born inside cmds/ (a program that forks at once is counted from its
// first fork) from one thread that moved in once — not a thread move in
// and out per program, each of which waited for the kernel's RCU grace
// period (5–15 ms) — and that thread leaves at StopStarting.
func TestCgroup1StartBornInsideWithoutMoves(t *testing.T) {
	needCgroup1(t)
	g := newGroup(t, Cgroup1, Spec{MaxProcesses: 20}) // 5 × 3 processes, and the spawner
	c := g.b.(cg1)
	memTasks := filepath.Join(c.mem, "cmds", "tasks")
	pidsTasks := filepath.Join(c.pids, "cmds", "tasks")

	var spawnerTID []string
	for i := 0; i < 5; i++ {
		cmd := exec.Command("/bin/sh", "-c", "sleep 30 & sleep 30 & wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		errc := make(chan error, 1)
		var placeErr error
		go func() { // a goroutine of its own, as the runspace's
			var err error
			placeErr, err = g.Start(cmd, cmd.Start)
			errc <- err
		}()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if placeErr != nil {
			t.Fatalf("not started inside: %v", placeErr)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		// Born inside: in cmds/ before Add.
		if !c.inCmds(cmd.Process.Pid) {
			t.Fatalf("program %d not born in cmds/", cmd.Process.Pid)
		}
		if err := g.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		// One thread of ours in cmds/, in both hierarchies, the same
		// one every time: no thread moved per program.
		mem, pids := ourThreadsIn(t, memTasks), ourThreadsIn(t, pidsTasks)
		if len(mem) != 1 || len(pids) != 1 || mem[0] != pids[0] {
			t.Fatalf("program %d: our threads in cmds/: memory %v, pids %v; want the one spawner in both", i, mem, pids)
		}
		if spawnerTID == nil {
			spawnerTID = mem
		} else if mem[0] != spawnerTID[0] {
			t.Fatalf("program %d started from thread %s, the first from %s: a thread was moved again", i, mem[0], spawnerTID[0])
		}
	}
	// The processes it forked at once are inside too.
	tstest.WaitFor(t, 10*time.Second, "every sleep in cmds/", func() bool {
		n := 0
		for _, p := range cgProcs(t, g) {
			if p != os.Getpid() {
				n++
			}
		}
		return n == 15
	})

	g.StopStarting()
	tstest.WaitFor(t, 10*time.Second, "the starting thread to leave cmds/", func() bool {
		return len(ourThreadsIn(t, memTasks)) == 0 && len(ourThreadsIn(t, pidsTasks)) == 0
	})
	// Start works again after StopStarting (a new spawner).
	cmd := exec.Command("/bin/true")
	if _, err := g.Start(cmd, cmd.Start); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}
