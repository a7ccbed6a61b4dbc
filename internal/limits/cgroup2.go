package limits

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cg2 is a group in the cgroup v2 hierarchy: dir (<mount>/tether/<name>)
// with two leaves, dir/host for the session host (no limits) and dir/cmds
// for its commands (the limits). The session's user may write the three
// cgroup.procs files: moving a process from host to cmds needs write access
// to their common ancestor's, dir/cgroup.procs.
type cg2 struct {
	dir string
}

func (c cg2) cmds() string { return filepath.Join(c.dir, "cmds") }
func (c cg2) host() string { return filepath.Join(c.dir, "host") }

func dir2(name string) (cg2, string, error) {
	mnt, err := v2Dir()
	if err != nil {
		return cg2{}, "", err
	}
	if mnt == "" {
		return cg2{}, "", errors.New("limits: no cgroup2 mount")
	}
	return cg2{dir: filepath.Join(mnt, parentName, name)}, mnt, nil
}

// enable2 turns the memory and pids controllers on for dir's children.
func enable2(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	on := strings.Fields(string(b))
	var want []string
	for _, c := range []string{"memory", "pids"} {
		if !slices.Contains(on, c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(want, " ")); err != nil {
		return fmt.Errorf("enable %s in %s: %w", strings.Join(want, " "), dir, err)
	}
	return nil
}

func create2(name string, uid, gid int, spec Spec) (backend, error) {
	c, mnt, err := dir2(name)
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
	mkdir := func(d string) error {
		err := os.Mkdir(d, 0o755)
		if err == nil {
			made = append(made, d)
			return nil
		}
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	parent := filepath.Dir(c.dir)
	if err := enable2(mnt); err != nil { // a no-op when already on (systemd)
		return fail(err)
	}
	if err := mkdir(parent); err != nil {
		return fail(err)
	}
	made = nil // the shared parent stays
	if err := enable2(parent); err != nil {
		return fail(err)
	}
	if err := mkdir(c.dir); err != nil {
		return fail(err)
	}
	if err := enable2(c.dir); err != nil {
		return fail(err)
	}
	for _, d := range []string{c.host(), c.cmds()} {
		if err := mkdir(d); err != nil {
			return fail(err)
		}
	}
	if err := c.update(spec); err != nil {
		return fail(err)
	}
	if err := chownFiles([]string{c.dir, c.host(), c.cmds()}, []string{"cgroup.procs"}, uid, gid); err != nil {
		return fail(err)
	}
	return c, nil
}

func open2(name string) (backend, error) {
	c, _, err := dir2(name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(c.cmds()); err != nil {
		return nil, fmt.Errorf("limits: open cgroup %s: %w", name, err)
	}
	return c, nil
}

func (c cg2) add(pid int) error {
	max, err := readInt(filepath.Join(c.cmds(), "pids.max"))
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if max > 0 {
		cur, err := readInt(filepath.Join(c.cmds(), "pids.current"))
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		if cur >= max {
			s, _ := c.spec()
			return &LimitError{Limit: ProcessLimit, Spec: s}
		}
	}
	err = moveProcs([]string{filepath.Join(c.cmds(), "cgroup.procs")}, pid)
	if errors.Is(err, fs.ErrPermission) {
		err = fmt.Errorf("%w (the agent must place the session host in %s with AddHost)", err, c.host())
	}
	return err
}

func (c cg2) addHost(pid int) error {
	if err := writeFile(filepath.Join(c.host(), "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("limits: move session host %d into %s: %w", pid, c.host(), err)
	}
	return nil
}

func (c cg2) update(s Spec) error {
	mem, swap := "max", "max"
	if s.MaxMemoryBytes > 0 {
		mem, swap = strconv.FormatInt(s.MaxMemoryBytes, 10), "0"
	}
	if err := writeFile(filepath.Join(c.cmds(), "memory.max"), mem); err != nil {
		return fmt.Errorf("limits: set memory.max: %w", err)
	}
	_ = writeFile(filepath.Join(c.cmds(), "memory.swap.max"), swap) // no swap accounting: fine
	p := "max"
	if s.MaxProcesses > 0 {
		p = strconv.Itoa(s.MaxProcesses)
	}
	if err := writeFile(filepath.Join(c.cmds(), "pids.max"), p); err != nil {
		return fmt.Errorf("limits: set pids.max: %w", err)
	}
	return nil
}

func (c cg2) spec() (Spec, error) {
	m, err := readInt(filepath.Join(c.cmds(), "memory.max"))
	if err != nil {
		return Spec{}, err
	}
	p, err := readInt(filepath.Join(c.cmds(), "pids.max"))
	if err != nil {
		return Spec{}, err
	}
	return Spec{MaxProcesses: int(p), MaxMemoryBytes: m}, nil
}

func (c cg2) events() (int, int, error) {
	oom, _, err := readKeyed(filepath.Join(c.cmds(), "memory.events"), "oom_kill")
	if err != nil {
		return 0, 0, err
	}
	hits, _, err := readKeyed(filepath.Join(c.cmds(), "pids.events"), "max")
	if err != nil {
		return 0, 0, err
	}
	return int(oom), int(hits), nil
}

func (c cg2) destroy() error {
	if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_ = writeFile(filepath.Join(c.cmds(), "pids.max"), "0")
	_ = writeFile(filepath.Join(c.dir, "cgroup.kill"), "1") // Linux 5.14+
	return killAndRemove(
		[]string{filepath.Join(c.cmds(), "cgroup.procs"), filepath.Join(c.host(), "cgroup.procs")},
		[]string{c.cmds(), c.host(), c.dir})
}

func (c cg2) describe() string {
	return "cgroup v2 memory+pids at " + c.cmds()
}
