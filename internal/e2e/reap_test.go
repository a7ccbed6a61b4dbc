package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/tstest"
)

// TestReapOrphans: a process started from the binary of a test process
// that died is ended, and its build directory removed; one started from a
// live owner's binary is left alone.
func TestReapOrphans(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	start := func(owner string) (*exec.Cmd, string) {
		dir, err := os.MkdirTemp("", "tether-bin-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		bin := filepath.Join(dir, "tether")
		b, err := os.ReadFile(sleep)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, dir
	}
	// A dead owner: a child that has exited and been waited for.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	orphan, orphanDir := start(strconv.Itoa(gone.Process.Pid) + " 1\n")
	st, err := limits.ProcStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	kept, keptDir := start(strconv.Itoa(os.Getpid()) + " " + strconv.FormatUint(st, 10) + "\n")

	reapOrphans()

	exited := make(chan struct{})
	go func() { orphan.Wait(); close(exited) }()
	tstest.WaitFor(t, 10*time.Second, "the orphan to be killed", func() bool {
		select {
		case <-exited:
			return true
		default:
			return false
		}
	})
	if ws := orphan.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Errorf("orphan ended with %v, want SIGKILL", orphan.ProcessState)
	}
	if _, err := os.Stat(orphanDir); !os.IsNotExist(err) {
		t.Errorf("orphaned build dir still there: %v", err)
	}
	if err := kept.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the live owner's process was ended: %v", err)
	}
	if _, err := os.Stat(keptDir); err != nil {
		t.Errorf("the live owner's build dir: %v", err)
	}
}
