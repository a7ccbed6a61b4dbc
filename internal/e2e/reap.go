package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tether-sh/tether/internal/limits"
)

// A test process that dies before Main's clean-up (go test's -timeout
// panics it, or it is killed) leaves its build directory and everything
// started from the binary in it: agents, and session hosts, which outlive
// their agent by design. Such leftovers kept ~130 session hosts running
// for hours on a developer machine. So Binary writes its owner (pid and
// start time) into the build directory, and Main, before the tests, ends
// the processes of build directories whose owner is gone.

const ownerFile = "owner"

// writeOwner records this process as the owner of the build directory dir.
func writeOwner(dir string) error {
	st, err := limits.ProcStart(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %d\n", os.Getpid(), st), 0o644)
}

// ownerGone reports whether dir has an owner record and that process is
// no longer running. A directory without a record (being made right now,
// or by an older harness) is left alone.
func ownerGone(dir string) bool {
	b, err := readRegular(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil || pid <= 0 {
		return false
	}
	now, err := limits.ProcStart(pid)
	return err != nil || now != start // gone, or the pid was reused
}

// reapOrphans ends the processes started from the binaries of earlier test
// processes that died without cleaning up, and removes their build
// directories. Processes of other users that this process may not signal
// (a normal user's run) are skipped.
func reapOrphans() {
	tmp := os.TempDir()
	dirs, _ := filepath.Glob(filepath.Join(tmp, "tether-bin-*"))
	orphaned := map[string]bool{}
	for _, d := range dirs {
		if ownerGone(d) {
			orphaned[d] = true
		}
	}
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range exes {
		exe, err := os.Readlink(p)
		if err != nil {
			continue
		}
		path, deleted := strings.CutSuffix(exe, " (deleted)")
		dir := filepath.Dir(path)
		if filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), "tether-bin-") {
			continue
		}
		if _, err := os.Stat(dir); !orphaned[dir] && !(deleted && os.IsNotExist(err)) {
			continue // a live test process's binary
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for d := range orphaned {
		os.RemoveAll(d)
	}
}
