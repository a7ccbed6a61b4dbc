package limits

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// cg2 is a group in the cgroup v2 hierarchy: dir (<mount>/tether/<name>,
// bounded by groupSpec) with two leaves, dir/host for the session host and
// dir/cmds for its commands (the Spec). The session's user may write the
// three cgroup.procs files: moving a process from host to cmds, or starting
// one in cmds (CLONE_INTO_CGROUP), needs write access to their common
// ancestor's, dir/cgroup.procs.
type cg2 struct {
	dir string
	fd  *cmdsFD
	ev  *eventFiles
}

// cmdsFD is the session host's descriptor of dir/cmds, for clone3.
type cmdsFD struct {
	once sync.Once
	fd   int // -1: not usable (kernel before 5.7, or open failed)
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
	return cg2{dir: filepath.Join(mnt, parentName, name), fd: &cmdsFD{fd: -1}, ev: newEventFiles()}, mnt, nil
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
	parent := filepath.Dir(c.dir)
	mkdir := func(d string) error {
		err := os.Mkdir(d, 0o755)
		if err == nil {
			made = append(made, d)
			return nil
		}
		if errors.Is(err, fs.ErrExist) && d == parent {
			return nil // the shared tether/ parent
		}
		return err
	}
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
	if err := mkdirNew(c.dir, []string{"host", "cmds"}); err != nil {
		return fail(err)
	}
	made = append(made, c.dir)
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

// inCmds2 reports whether pid is in cmds/ already (born there).
func (c cg2) inCmds(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	want := "/" + parentName + "/" + filepath.Base(c.dir) + "/cmds"
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok && strings.HasSuffix(p, want) {
			return true
		}
	}
	return false
}

func (c cg2) add(pid int) error {
	// One that ended meanwhile is left alone (see exited) when programs
	// are born inside (clone3): what it forked was born inside too.
	if c.inCmds(pid) || (clone3Works() && exited(pid)) {
		return nil
	}
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

// clone3Works reports whether the kernel has clone3 with
// CLONE_INTO_CGROUP (Linux 5.7).
var clone3Works = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	return major > 5 || (major == 5 && minor >= 7)
})

// prepareStart makes cmd be born in cmds/ (clone3 CLONE_INTO_CGROUP).
func (c cg2) prepareStart(cmd *exec.Cmd) error {
	c.fd.once.Do(func() {
		if !clone3Works() {
			return
		}
		fd, err := unix.Open(c.cmds(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			c.fd.fd = fd
		}
	})
	if c.fd.fd < 0 {
		return nil // Add moves it after the start
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = c.fd.fd
	return nil
}

func (c cg2) endCommand() {}

// update sets cmds/ to s and the group to groupSpec(s).
func (c cg2) update(s Spec) error {
	if err := set2(c.dir, groupSpec(s)); err != nil {
		return err
	}
	return set2(c.cmds(), s)
}

func set2(dir string, s Spec) error {
	mem, swap := "max", "max"
	if s.MaxMemoryBytes > 0 {
		mem, swap = strconv.FormatInt(s.MaxMemoryBytes, 10), "0"
	}
	if err := writeFile(filepath.Join(dir, "memory.max"), mem); err != nil {
		return fmt.Errorf("limits: set memory.max: %w", err)
	}
	_ = writeFile(filepath.Join(dir, "memory.swap.max"), swap) // no swap accounting: fine
	p := "max"
	if s.MaxProcesses > 0 {
		p = strconv.Itoa(s.MaxProcesses)
	}
	if err := writeFile(filepath.Join(dir, "pids.max"), p); err != nil {
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

// events: memory.events is hierarchical (the group's counts its leaves');
// pids.events counts where the limit was hit.
func (c cg2) events() (int, int, error) {
	oom, _, err := c.ev.readKeyed(filepath.Join(c.dir, "memory.events"), "oom_kill")
	if err != nil {
		return 0, 0, err
	}
	var hits int64
	for _, d := range []string{c.dir, c.cmds()} {
		n, _, err := c.ev.readKeyed(filepath.Join(d, "pids.events"), "max")
		if err != nil {
			return 0, 0, err
		}
		hits += n
	}
	return int(oom), int(hits), nil
}

func (c cg2) destroy() error {
	c.ev.close()
	if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// As cg1.destroy: commands now, the ending session host after a grace.
	_ = writeFile(filepath.Join(c.cmds(), "pids.max"), "0")
	_ = writeFile(filepath.Join(c.cmds(), "cgroup.kill"), "1") // Linux 5.14+
	killAll([]string{filepath.Join(c.cmds(), "cgroup.procs")})
	waitEmpty([]string{filepath.Join(c.host(), "cgroup.procs")}, HostExitGrace)
	_ = writeFile(filepath.Join(c.dir, "pids.max"), "0")
	_ = writeFile(filepath.Join(c.dir, "cgroup.kill"), "1")
	return killAndRemove(
		[]string{filepath.Join(c.cmds(), "cgroup.procs"), filepath.Join(c.host(), "cgroup.procs")},
		[]string{c.cmds(), c.host(), c.dir})
}

func (c cg2) describe() string {
	return "cgroup v2 memory+pids at " + c.dir + " (commands in cmds/, session host in host/)"
}
