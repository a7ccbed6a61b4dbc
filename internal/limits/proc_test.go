package limits

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/tstest"
)

// TestReadProc: /proc/<pid>/stat's fields as the process itself knows
// them, also for a command name with spaces and parentheses.
func TestReadProc(t *testing.T) {
	p, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := unix.Getsid(0)
	if p.pid != os.Getpid() || p.ppid != os.Getppid() || p.pgrp != syscall.Getpgrp() || p.sid != sid || p.zombie || p.start == 0 || p.rss <= 0 {
		t.Fatalf("readProc(self) = %+v; want pid %d ppid %d pgrp %d sid %d, a start time and an rss", p, os.Getpid(), os.Getppid(), syscall.Getpgrp(), sid)
	}
	odd := filepath.Join(t.TempDir(), "x) (y 1 2")
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip(err)
	}
	if err := os.WriteFile(odd, b, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c, err := readProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if c.ppid != os.Getpid() || c.pgrp != syscall.Getpgrp() || c.sid != sid {
		t.Fatalf("readProc(%q) = %+v; want ppid %d pgrp %d sid %d", odd, c, os.Getpid(), syscall.Getpgrp(), sid)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("readProc of a pid that cannot exist succeeded")
	}
}

// TestListProcsOf: only the processes of the uid asked for. Counts are not
// compared (other tests start and end processes meanwhile): a process of
// another uid that lives throughout is listed for its uid and for all, and
// not for ours.
func TestListProcsOf(t *testing.T) {
	mine, err := listProcsOf(os.Geteuid())
	if err != nil {
		t.Fatal(err)
	}
	if !hasPid(mine, os.Getpid()) {
		t.Fatalf("listProcsOf(%d) misses this process", os.Geteuid())
	}
	if os.Geteuid() == 0 {
		const nobody = 65534
		other := exec.Command("sleep", "30")
		other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { other.Process.Kill(); other.Wait() }()
		pid := other.Process.Pid
		all, err := listProcs()
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := listProcsOf(nobody)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := listProcsOf(0)
		if err != nil {
			t.Fatal(err)
		}
		if !hasPid(all, pid) || !hasPid(theirs, pid) || hasPid(ours, pid) {
			t.Fatalf("uid %d's pid %d: in all %v, in its uid's %v, in root's %v; want true, true, false", nobody, pid, hasPid(all, pid), hasPid(theirs, pid), hasPid(ours, pid))
		}
	}
	if none, err := listProcsOf(54321); err != nil || len(none) != 0 {
		t.Fatalf("listProcsOf(54321), a uid with no process: %d processes, %v", len(none), err)
	}
}

func hasPid(ps []proc, pid int) bool {
	for _, p := range ps {
		if p.pid == pid {
			return true
		}
	}
	return false
}

// exited: a live process has not, a zombie and a reaped one have.
func TestExited(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "read x")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if exited(pid) {
		t.Fatal("a running process counts as exited")
	}
	in.Close() // sh ends; not reaped yet, it is a zombie
	tstest.WaitFor(t, 10*time.Second, "the shell to be a zombie", func() bool {
		p, err := readProc(pid)
		return err == nil && p.zombie
	})
	if !exited(pid) {
		t.Fatal("a zombie does not count as exited")
	}
	cmd.Wait()
	if !exited(pid) {
		t.Fatal("a reaped process does not count as exited")
	}
}
