package limits

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
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

// TestListProcsOf: only the processes of the uid asked for.
func TestListProcsOf(t *testing.T) {
	mine, err := listProcsOf(os.Geteuid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range mine {
		found = found || p.pid == os.Getpid()
	}
	if !found {
		t.Fatalf("listProcsOf(%d) misses this process", os.Geteuid())
	}
	all, err := listProcs()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && len(mine) > len(all) {
		t.Fatalf("root's %d processes are more than all %d", len(mine), len(all))
	}
	if none, err := listProcsOf(54321); err != nil || len(none) != 0 {
		t.Fatalf("listProcsOf(54321), a uid with no process: %d processes, %v", len(none), err)
	}
}
