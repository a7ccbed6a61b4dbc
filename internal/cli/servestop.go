package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidFileName is the file in the state directory where a running agent
// keeps its pid, flock'd for as long as it runs: a lock that can be taken
// means no agent runs, however stale the pid in it.
const pidFileName = "agent.pid"

// holdPidFile writes this process's pid to STATE/agent.pid and locks it
// until release. A second agent on the same state is refused.
func holdPidFile(state string) (release func(), err error) {
	p := filepath.Join(state, pidFileName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		pid := readPid(p)
		return nil, fmt.Errorf("another tether serve (pid %d) runs with the state directory %s; stop it first with tether serve --stop --state %s", pid, state, state)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	// The file stays when the agent ends: unlocked, it says no agent runs.
	return func() { f.Close() }, nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stopAgent sends SIGTERM to the agent running with state and waits until
// it has let go of its pid file.
func stopAgent(ctx context.Context, env *Env, state string) error {
	p := filepath.Join(state, pidFileName)
	none := fmt.Errorf("no tether serve runs with the state directory %s (no agent holds %s); for another one give its --state", state, p)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return none
	}
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	free := func() bool { return syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil }
	if free() {
		return none
	}
	pid := readPid(p)
	if pid <= 0 {
		return fmt.Errorf("%s is held but holds no pid; stop the agent by hand", p)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop tether serve (pid %d): %w", pid, err)
	}
	const wait = 30 * time.Second
	deadline := time.Now().Add(wait)
	// Its lock goes when it closes the pid file; it has ended when its
	// process is gone or a zombie (its parent reaps it, not us).
	for !free() || running(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("tether serve (pid %d) did not stop within %s of SIGTERM; kill -KILL %d ends it (sessions keep running)", pid, wait, pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Fprintf(env.Stdout, "stopped tether serve (pid %d, state %s); its sessions keep running\n", pid, state)
	return nil
}

// running reports whether process pid exists and has not exited (a zombie
// has exited).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE …: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
