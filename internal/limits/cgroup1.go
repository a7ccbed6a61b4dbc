package limits

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cg1 is a group in the cgroup v1 memory and pids hierarchies (the same
// directory when both controllers share a hierarchy).
type cg1 struct {
	mem, pids string
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
	return cg1{mem: filepath.Join(mem, parentName, name), pids: filepath.Join(pids, parentName, name)}, nil
}

func (c cg1) dirs() []string {
	if c.mem == c.pids {
		return []string{c.mem}
	}
	return []string{c.mem, c.pids}
}

func create1(name string, uid, gid int, spec Spec) (backend, error) {
	c, err := dirs1(name)
	if err != nil {
		return nil, err
	}
	var made []string
	fail := func(err error) (backend, error) {
		for _, d := range made {
			os.Remove(d)
		}
		return nil, fmt.Errorf("limits: create cgroup %s: %w", name, err)
	}
	for _, d := range c.dirs() {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fail(err)
		}
		switch err := os.Mkdir(d, 0o755); {
		case err == nil:
			made = append(made, d)
		case !errors.Is(err, fs.ErrExist):
			return fail(err)
		}
	}
	if err := c.update(spec); err != nil {
		return fail(err)
	}
	if err := chownFiles(c.dirs(), []string{"cgroup.procs", "tasks"}, uid, gid); err != nil {
		return fail(err)
	}
	return c, nil
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
	for _, d := range c.dirs() {
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

func (c cg1) add(pid int) error {
	max, err := readInt(filepath.Join(c.pids, "pids.max"))
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if max > 0 {
		cur, err := readInt(filepath.Join(c.pids, "pids.current"))
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		if cur >= max {
			s, _ := c.spec()
			return &LimitError{Limit: ProcessLimit, Spec: s}
		}
	}
	var files []string
	for _, d := range c.dirs() {
		files = append(files, filepath.Join(d, "cgroup.procs"))
	}
	return moveProcs(files, pid)
}

func (c cg1) addHost(int) error { return nil }

func (c cg1) update(s Spec) error {
	if err := setMemory1(c.mem, s.MaxMemoryBytes); err != nil {
		return err
	}
	v := "max"
	if s.MaxProcesses > 0 {
		v = strconv.Itoa(s.MaxProcesses)
	}
	if err := writeFile(filepath.Join(c.pids, "pids.max"), v); err != nil {
		return fmt.Errorf("limits: set pids.max: %w", err)
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
	m, err := readInt(filepath.Join(c.mem, "memory.limit_in_bytes"))
	if err != nil {
		return Spec{}, err
	}
	if m >= unlimited1 {
		m = 0
	}
	p, err := readInt(filepath.Join(c.pids, "pids.max"))
	if err != nil {
		return Spec{}, err
	}
	return Spec{MaxProcesses: int(p), MaxMemoryBytes: m}, nil
}

func (c cg1) events() (int, int, error) {
	oom, ok, err := readKeyed(filepath.Join(c.mem, "memory.oom_control"), "oom_kill")
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		// Kernels before 4.13 have no oom_kill counter: take a failed
		// charge at the limit as one.
		fc, _ := readInt(filepath.Join(c.mem, "memory.failcnt"))
		maxUse, _ := readInt(filepath.Join(c.mem, "memory.max_usage_in_bytes"))
		lim, _ := readInt(filepath.Join(c.mem, "memory.limit_in_bytes"))
		if fc > 0 && lim < unlimited1 && maxUse >= lim {
			oom = 1
		}
	}
	hits, _, err := readKeyed(filepath.Join(c.pids, "pids.events"), "max")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	return int(oom), int(hits), nil
}

func (c cg1) destroy() error {
	var procsFiles []string
	for _, d := range c.dirs() {
		procsFiles = append(procsFiles, filepath.Join(d, "cgroup.procs"))
	}
	// No more forks, then kill what is there.
	_ = writeFile(filepath.Join(c.pids, "pids.max"), "0")
	return killAndRemove(procsFiles, c.dirs())
}

// killAndRemove SIGKILLs the processes listed in procsFiles until there are
// none, then removes dirs (children first: the order given).
func killAndRemove(procsFiles, dirs []string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, f := range procsFiles {
			pids, err := readPids(f)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("limits: destroy: %w", err)
			}
			for _, p := range pids {
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
		return "cgroup v1 memory+pids at " + c.mem
	}
	return fmt.Sprintf("cgroup v1 memory+pids at %s and %s", c.mem, c.pids)
}
