package limits

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// In cgroup v1 a child is born in its forking thread's groups, so
// prepareStart moves the starting thread into cmds/ and back. A move is
// slow after a pause (the kernel's cgroup_threadgroup_rwsem waits for an
// RCU grace period, we believe): the first of a command's moves took
// 6–16 ms here, the next ones 20–50 µs, and a builtin-shell session paid
// that for every program it ran (`/bin/true` ~8 ms slower than the shell's
// `true`). The spawner is one OS thread that moves into cmds/ once and
// starts every program of the session, so that they are born inside
// without a move per command. It holds the one task cmds/ has beyond
// MaxProcesses (see update), which the moved thread held before for the
// instant of each fork. The programs of a pipeline now start one after
// the other on that thread (a start is a vfork and an exec, well under the
// millisecond a move cost).

// spawner is a goroutine locked to an OS thread that lives in cmds/.
type spawner struct {
	jobs chan func()
	stop chan struct{} // closed by stopStarting
	done chan struct{} // closed when the goroutine ended, its thread back home
}

// starter is a backend that starts programs itself (cg1, with its spawner).
type starter interface {
	start(cmd *exec.Cmd, start func() error) (placeErr, err error)
	stopStarting()
}

// Start calls start, which must start cmd, such that the program is born
// inside the commands' group; Add (AfterStart) follows as before. It is
// PrepareStart and the start in one call, for callers that can hand over
// the start itself (the builtin shell's runspace): cgroup v1 forks on the
// group's spawner thread instead of moving the caller's thread, cgroup v2
// uses CLONE_INTO_CGROUP as PrepareStart does. placeErr says the program
// could not be started inside (it was started anyway: Add moves it in);
// err is start's.
func (g *Group) Start(cmd *exec.Cmd, start func() error) (placeErr, err error) {
	if s, ok := g.b.(starter); ok {
		return s.start(cmd, start)
	}
	placeErr = g.b.prepareStart(cmd)
	return placeErr, start()
}

// StopStarting ends what Start keeps for the next program (cgroup v1's
// spawner thread, which would otherwise keep this process listed in
// cmds/cgroup.procs). Call it once no more programs start (the session
// closes); a later Start starts a new spawner.
func (g *Group) StopStarting() {
	if s, ok := g.b.(starter); ok {
		s.stopStarting()
	}
}

func (c cg1) start(cmd *exec.Cmd, start func() error) (placeErr, err error) {
	sp, spErr := c.spawner()
	if sp != nil {
		errc := make(chan error, 1)
		select {
		case sp.jobs <- func() { errc <- start() }:
			return nil, <-errc
		case <-sp.done:
			// Stopped meanwhile (the session closes): start as before.
		}
	}
	if placeErr = c.prepareStart(cmd); placeErr == nil {
		placeErr = spErr
	}
	return placeErr, start()
}

// spawner returns the group's spawner, starting it on first use. A failure
// is kept: the thread could not move in, and a retry per command would pay
// what the spawner saves.
func (c cg1) spawner() (*spawner, error) {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if c.st.sp != nil || c.st.spErr != nil {
		return c.st.sp, c.st.spErr
	}
	sp := &spawner{jobs: make(chan func()), stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer close(sp.done)
		tid := unix.Gettid()
		from, err := c.threadGroups(tid)
		if err != nil {
			runtime.UnlockOSThread()
			ready <- err
			return
		}
		// home moves the thread back where it came from and gives it
		// back to the Go scheduler; if it cannot go home, the goroutine
		// ends locked and Go ends the thread (with the main thread,
		// which Go cannot end, the group keeps one idle task).
		home := func(moved []string) {
			for _, d := range moved {
				if writeFile(filepath.Join(d, "tasks"), strconv.Itoa(tid)) != nil {
					return
				}
			}
			runtime.UnlockOSThread()
		}
		for i, d := range c.sub("cmds") {
			if err := writeFile(filepath.Join(d, "tasks"), strconv.Itoa(tid)); err != nil {
				home(from[:i])
				ready <- fmt.Errorf("limits: move the starting thread %d into %s: %w", tid, d, err)
				return
			}
		}
		ready <- nil
		defer home(from)
		for {
			select {
			case job := <-sp.jobs:
				job()
			case <-sp.stop:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		c.st.spErr = err
		return nil, err
	}
	c.st.sp = sp
	return sp, nil
}

func (c cg1) stopStarting() {
	c.st.mu.Lock()
	sp := c.st.sp
	c.st.sp, c.st.spErr = nil, nil
	c.st.mu.Unlock()
	if sp != nil {
		close(sp.stop)
		<-sp.done
	}
}
