package limits

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cg1 is a group in the cgroup v1 memory and pids hierarchies (the same
// directories when both controllers share a hierarchy): mem and pids are the
// group's directories, each with host/ (the session host) and cmds/ (its
// commands) below. The group's own limits bound both (memory.use_hierarchy);
// cmds/ carries the commands' limits.
type cg1 struct {
	mem, pids string
	st        *threads
	ev        *eventFiles
}

// threads are the session host's OS threads that prepareStart moved into
// cmds/ (cgroup v1 membership is per thread; a child is born in its forking
// thread's groups).
type threads struct {
	mu    sync.Mutex
	moved map[int][]string // tid -> the groups it came from (as c.dirs())
	sp    *spawner         // the thread that starts programs, once started (spawner.go)
	spErr error            // why it could not start
}

// unlimited1 is what memory.limit_in_bytes reads when there is no limit
// (PAGE_COUNTER_MAX pages); anything this large counts as unlimited.
const unlimited1 = int64(1) << 62

func dirs1(name string) (cg1, error) {
	mem, pids, err := v1Dirs()
	if err != nil {
		return cg1{}, err
	}
	if mem == "" || pids == "" {
		return cg1{}, errors.New("limits: no cgroup v1 memory and pids hierarchies")
	}
	return cg1{mem: filepath.Join(mem, parentName, name), pids: filepath.Join(pids, parentName, name),
		st: &threads{moved: map[int][]string{}}, ev: newEventFiles()}, nil
}

func (c cg1) dirs() []string {
	if c.mem == c.pids {
		return []string{c.mem}
	}
	return []string{c.mem, c.pids}
}

// sub lists dir/part for each of the group's directories.
func (c cg1) sub(part string) []string {
	var out []string
	for _, d := range c.dirs() {
		out = append(out, filepath.Join(d, part))
	}
	return out
}

func files(dirs []string, name string) []string {
	var out []string
	for _, d := range dirs {
		out = append(out, filepath.Join(d, name))
	}
	return out
}

func create1(name string, uid, gid int, spec Spec) (backend, error) {
	c, err := dirs1(name)
	if err != nil {
		return nil, err
	}
	var made []string
	fail := func(err error) (backend, error) {
		for i := len(made) - 1; i >= 0; i-- {
			os.Remove(made[i])
		}
		return nil, fmt.Errorf("limits: create cgroup %s: %w", name, err)
	}
	for _, d := range c.dirs() {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fail(err)
		}
		if err := mkdirNew(d, []string{"host", "cmds"}); err != nil {
			return fail(err)
		}
		made = append(made, d)
		if d == c.mem {
			// Children's memory counts in the group (always so since
			// Linux 5.x; older kernels need it set before children exist).
			_ = writeFile(filepath.Join(d, "memory.use_hierarchy"), "1")
		}
		for _, s := range []string{"host", "cmds"} {
			if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
				return fail(err)
			}
			made = append(made, filepath.Join(d, s))
		}
	}
	if err := c.update(spec); err != nil {
		return fail(err)
	}
	if err := chownFiles(append(c.sub("host"), c.sub("cmds")...), []string{"cgroup.procs", "tasks"}, uid, gid); err != nil {
		return fail(err)
	}
	return c, nil
}

// mkdirNew makes the cgroup d, which must not exist: a group is never
// reused, and never given to a second owner. A leftover that holds no
// process (its session ended while no agent ran) is removed first, children
// (subs) before it; removing a cgroup that has processes fails (EBUSY), so
// a live group is never taken.
func mkdirNew(d string, subs []string) error {
	err := os.Mkdir(d, 0o755)
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	for _, dir := range append(append([]string{}, subs...), "") {
		p := filepath.Join(d, dir)
		if pids, err := readPids(filepath.Join(p, "cgroup.procs")); err == nil && len(pids) > 0 {
			return fmt.Errorf("%w: %s holds processes %v", ErrExists, p, pids)
		}
	}
	for _, s := range subs {
		if err := os.Remove(filepath.Join(d, s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s: %v", ErrExists, d, err)
		}
	}
	if err := os.Remove(d); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrExists, d, err)
	}
	if err := os.Mkdir(d, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, d)
		}
		return err
	}
	return nil
}

// chownFiles gives uid/gid the named files of each dir (uid < 0: nothing).
func chownFiles(dirs, files []string, uid, gid int) error {
	if uid < 0 || (uid == os.Geteuid() && gid == os.Getegid()) {
		return nil
	}
	for _, d := range dirs {
		for _, f := range files {
			if err := os.Chown(filepath.Join(d, f), uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

func open1(name string) (backend, error) {
	c, err := dirs1(name)
	if err != nil {
		return nil, err
	}
	for _, d := range c.sub("cmds") {
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("limits: open cgroup %s: %w", name, err)
		}
	}
	return c, nil
}

func writeFile(path, v string) error {
	// O_WRONLY without O_CREATE/O_TRUNC: cgroup files exist and take one
	// write each.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readKeyed reads key from a "key value" per line file (memory.oom_control,
// memory.events, pids.events).
func readKeyed(path, key string) (int64, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	return parseKeyed(b, key)
}

func parseKeyed(b []byte, key string) (int64, bool, error) {
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, true, err
		}
	}
	return 0, false, nil
}

func readPids(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// moveProcs writes pid, then the children it already forked (AfterStart runs
// after the process started, so it may have), into each cgroup.procs file.
// A process that is gone is skipped.
func moveProcs(procsFiles []string, pid int) error {
	for _, f := range procsFiles {
		if err := writeFile(f, strconv.Itoa(pid)); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil
			}
			return fmt.Errorf("limits: move process %d into %s: %w", pid, filepath.Dir(f), err)
		}
	}
	all, err := listProcs()
	if err != nil {
		return nil
	}
	for _, d := range descendants(all, pid) {
		for _, f := range procsFiles {
			_ = writeFile(f, strconv.Itoa(d))
		}
	}
	return nil
}

// prepareStart moves the calling goroutine's OS thread into cmds/, so that
// the child cmd.Start forks is born there (see Group.PrepareStart).
func (c cg1) prepareStart(*exec.Cmd) error {
	runtime.LockOSThread()
	tid := unix.Gettid()
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if c.st.moved[tid] != nil {
		// Moved and locked by an earlier call whose start failed (or is
		// retried): keep one lock.
		runtime.UnlockOSThread()
		return nil
	}
	from, err := c.threadGroups(tid)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	for i, d := range c.sub("cmds") {
		if err := writeFile(filepath.Join(d, "tasks"), strconv.Itoa(tid)); err != nil {
			for _, h := range from[:i] {
				_ = writeFile(filepath.Join(h, "tasks"), strconv.Itoa(tid))
			}
			runtime.UnlockOSThread()
			return fmt.Errorf("limits: move thread %d into %s: %w", tid, d, err)
		}
	}
	c.st.moved[tid] = from
	return nil
}

// threadGroups finds the memory and pids groups of thread tid of this
// process (as c.dirs()).
func (c cg1) threadGroups(tid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/cgroup", tid))
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	var out []string
	for _, d := range c.dirs() {
		root := filepath.Dir(filepath.Dir(d)) // <mount>/tether/<name>
		ctl := "memory"
		if d == c.pids && d != c.mem {
			ctl = "pids"
		}
		found := ""
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), ctl) {
				found = filepath.Join(root, f[2])
			}
		}
		if found == "" {
			return nil, fmt.Errorf("limits: thread %d has no %s cgroup", tid, ctl)
		}
		out = append(out, found)
	}
	return out, nil
}

// threadBack moves thread tid back where it came from. c.st.mu is held.
func (c cg1) threadBack(tid int) {
	for _, d := range c.st.moved[tid] {
		_ = writeFile(filepath.Join(d, "tasks"), strconv.Itoa(tid))
	}
	delete(c.st.moved, tid)
}

func (c cg1) endCommand() {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	for tid := range c.st.moved {
		c.threadBack(tid)
	}
}

// inCmds reports whether pid is in cmds/ in every hierarchy.
func (c cg1) inCmds(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	want := "/" + parentName + "/" + filepath.Base(c.mem) + "/cmds"
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		// id:controllers:path
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		ctl := strings.Split(f[1], ",")
		if (slices.Contains(ctl, "memory") || slices.Contains(ctl, "pids")) && strings.HasSuffix(f[2], want) {
			n += len(slices.DeleteFunc(ctl, func(s string) bool { return s != "memory" && s != "pids" }))
		}
	}
	return n >= 2
}

func (c cg1) add(pid int) error {
	c.st.mu.Lock()
	if tid := unix.Gettid(); c.st.moved[tid] != nil {
		// This goroutine's start (a moved thread is locked to the
		// goroutine that moved it): its thread goes home.
		c.threadBack(tid)
		runtime.UnlockOSThread()
	}
	c.st.mu.Unlock()
	cmdsProcs := files(c.sub("cmds"), "cgroup.procs")
	if !c.inCmds(pid) && !exited(pid) {
		// Not born inside (PrepareStart was not used or failed): refuse
		// it when the commands are at their limit, else move it and what
		// it forked. (One that ended meanwhile is left alone, see
		// exited: what it forked outside is in host/, taken below.)
		max, err := readInt(filepath.Join(c.pids, "cmds", "pids.max"))
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		if max > 0 {
			cur, err := readInt(filepath.Join(c.pids, "cmds", "pids.current"))
			if err != nil {
				return fmt.Errorf("limits: %w", err)
			}
			if cur >= max-1 {
				s, _ := c.spec()
				return &LimitError{Limit: ProcessLimit, Spec: s}
			}
		}
		if err := moveProcs(cmdsProcs, pid); err != nil {
			return err
		}
	}
	// Anything else in host/ is a process forked outside PrepareStart:
	// it belongs with the commands too.
	self := os.Getpid()
	for _, f := range files(c.sub("host"), "cgroup.procs") {
		pids, _ := readPids(f)
		for _, p := range pids {
			if p != self {
				for _, to := range cmdsProcs {
					_ = writeFile(to, strconv.Itoa(p))
				}
			}
		}
	}
	return nil
}

// addHost puts the session host into host/ (the agent, right after
// starting it: before it starts anything).
func (c cg1) addHost(pid int) error {
	for _, d := range c.sub("host") {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("limits: move session host %d into %s: %w", pid, d, err)
		}
	}
	return nil
}

// update sets cmds/ to s and the group to groupSpec(s). cmds/ gets one more
// task than MaxProcesses: the session host's thread that starts a program is
// in cmds/ for the instant of its fork (prepareStart).
func (c cg1) update(s Spec) error {
	g := groupSpec(s)
	// (v1 does not order a child's and its parent's limits.)
	if err := setMemory1(c.mem, g.MaxMemoryBytes); err != nil {
		return err
	}
	if err := setMemory1(filepath.Join(c.mem, "cmds"), s.MaxMemoryBytes); err != nil {
		return err
	}
	for _, step := range []struct {
		dir string
		max int
	}{{c.pids, g.MaxProcesses}, {filepath.Join(c.pids, "cmds"), s.MaxProcesses}} {
		v := "max"
		if step.max > 0 {
			if step.dir != c.pids {
				step.max++
			}
			v = strconv.Itoa(step.max)
		}
		if err := writeFile(filepath.Join(step.dir, "pids.max"), v); err != nil {
			return fmt.Errorf("limits: set pids.max: %w", err)
		}
	}
	return nil
}

// setMemory1 sets memory.limit_in_bytes and, when the kernel has swap
// accounting, memory.memsw.limit_in_bytes to the same value (no swapping
// past the limit). memsw must stay >= the memory limit, so memsw is written
// before (raising) and after (lowering) the memory limit.
func setMemory1(dir string, limit int64) error {
	v := "-1"
	if limit > 0 {
		v = strconv.FormatInt(limit, 10)
	}
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	_ = writeFile(memsw, v)
	if err := writeFile(filepath.Join(dir, "memory.limit_in_bytes"), v); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("limits: set memory limit to %d MB: the session's processes use more", mb(limit))
		}
		return fmt.Errorf("limits: set memory.limit_in_bytes: %w", err)
	}
	_ = writeFile(memsw, v)
	return nil
}

func (c cg1) spec() (Spec, error) {
	m, err := readInt(filepath.Join(c.mem, "cmds", "memory.limit_in_bytes"))
	if err != nil {
		return Spec{}, err
	}
	if m >= unlimited1 {
		m = 0
	}
	p, err := readInt(filepath.Join(c.pids, "cmds", "pids.max"))
	if err != nil {
		return Spec{}, err
	}
	if p > 0 {
		p-- // the starting thread's slot (update)
	}
	return Spec{MaxProcesses: int(p), MaxMemoryBytes: m}, nil
}

// events reads the group's counters. cgroup v1 counts an OOM kill in the
// group of the victim, a process limit hit where the limit was hit: the
// sum over the group and its two parts.
func (c cg1) events() (int, int, error) {
	var oom int64
	for _, d := range []string{c.mem, filepath.Join(c.mem, "cmds"), filepath.Join(c.mem, "host")} {
		n, ok, err := c.ev.readKeyed(filepath.Join(d, "memory.oom_control"), "oom_kill")
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			// Kernels before 4.13 have no oom_kill counter: take a
			// failed charge at the limit as one.
			fc, _ := readInt(filepath.Join(d, "memory.failcnt"))
			maxUse, _ := readInt(filepath.Join(d, "memory.max_usage_in_bytes"))
			lim, _ := readInt(filepath.Join(d, "memory.limit_in_bytes"))
			if fc > 0 && lim < unlimited1 && maxUse >= lim {
				n = 1
			}
		}
		oom += n
	}
	hits := int64(0)
	for _, d := range []string{c.pids, filepath.Join(c.pids, "cmds")} {
		n, _, err := c.ev.readKeyed(filepath.Join(d, "pids.events"), "max")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, 0, err
		}
		hits += n
	}
	return int(oom), int(hits), nil
}

func (c cg1) destroy() error {
	c.ev.close()
	if _, err := os.Stat(c.pids); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(c.mem); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	// No more forks in cmds/, its processes killed; the session host,
	// which is ending (Destroy follows its close), gets HostExitGrace to
	// finish; then whatever is left goes.
	_ = writeFile(filepath.Join(c.pids, "cmds", "pids.max"), "0")
	killAll(files(c.sub("cmds"), "cgroup.procs"))
	waitEmpty(files(c.sub("host"), "cgroup.procs"), HostExitGrace)
	_ = writeFile(filepath.Join(c.pids, "pids.max"), "0")
	var procs, dirs []string
	for _, part := range []string{"cmds", "host", ""} {
		procs = append(procs, files(c.sub(part), "cgroup.procs")...)
		dirs = append(dirs, c.sub(part)...)
	}
	return killAndRemove(procs, dirs)
}

// HostExitGrace is how long Destroy lets the session host finish exiting
// (it is inside the group) before it is killed.
var HostExitGrace = 5 * time.Second

// killAll SIGKILLs the processes listed in procsFiles once (not this one).
func killAll(procsFiles []string) {
	for _, f := range procsFiles {
		pids, _ := readPids(f)
		for _, p := range pids {
			if p != os.Getpid() {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}
}

// waitEmpty waits up to d for the procsFiles to list no process.
func waitEmpty(procsFiles []string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n := 0
		for _, f := range procsFiles {
			pids, _ := readPids(f)
			n += len(pids)
		}
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killAndRemove SIGKILLs the processes listed in procsFiles until there are
// none, then removes dirs (children first: the order given).
func killAndRemove(procsFiles, dirs []string) error {
	deadline := time.Now().Add(10 * time.Second)
	self := os.Getpid()
	for {
		n := 0
		for _, f := range procsFiles {
			pids, err := readPids(f)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("limits: destroy: %w", err)
			}
			for _, p := range pids {
				if p == self {
					// A thread of ours moved in to start a program
					// (prepareStart): never kill the caller.
					continue
				}
				n++
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("limits: destroy: %d processes left in %s", n, dirs[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, d := range dirs {
		for {
			err := os.Remove(d)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			// EBUSY while killed processes finish leaving.
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("limits: destroy: %w", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func (c cg1) describe() string {
	if c.mem == c.pids {
		return "cgroup v1 memory+pids at " + c.mem + " (commands in cmds/, session host in host/)"
	}
	return fmt.Sprintf("cgroup v1 memory+pids at %s and %s (commands in cmds/, session host in host/)", c.mem, c.pids)
}
