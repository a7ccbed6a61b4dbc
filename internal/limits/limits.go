// Package limits enforces a session's process and memory limits
// (MaxProcessesPerShell, MaxMemoryPerShellMB) on the processes the session
// runs.
//
// Three mechanisms, best first (see Detect):
//
//   - cgroup2: a cgroup per session in a cgroup v2 hierarchy that has the
//     memory and pids controllers, at <mount>/tether/<name>. The group is a
//     small domain: <name>/cmds holds the session's commands and carries the
//     limits (memory.max, memory.swap.max, pids.max); <name>/host is where the
//     agent puts the session host (AddHost), because cgroup v2 only lets an
//     unprivileged process move processes between cgroups below a common
//     ancestor it may write to.
//   - cgroup1: a cgroup per session in the v1 memory and pids hierarchies, at
//     <memory mount>/tether/<name> and <pids mount>/tether/<name>
//     (memory.limit_in_bytes and memory.memsw.limit_in_bytes, pids.max).
//   - rlimit: no writable cgroups (a non-root agent). Each process gets
//     RLIMIT_AS = the memory limit, and a monitor in the session host counts
//     the session's live processes and their resident memory through /proc
//     and kills the newest processes over MaxProcesses, and the biggest while
//     the total is over the memory limit.
//
// The agent (root) creates a session's Group before starting its session host
// (Create) and removes it when the session closes (Destroy). The session host,
// running as the session's user, reopens it by name (Open) and calls Add from
// runspace's AfterStart for every process it starts; the session host itself
// is not in the limited group, so a command that runs out of memory is killed
// and the session survives. Events tells the session host that a command was
// stopped by a limit, and StopMessage gives the line to print.
package limits

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
)

// Mechanism is how limits are enforced.
type Mechanism string

// The mechanisms, best first.
const (
	Cgroup2 Mechanism = "cgroup2"
	Cgroup1 Mechanism = "cgroup1"
	Rlimit  Mechanism = "rlimit"
)

// Spec is what a Group enforces. 0 means unlimited.
type Spec struct {
	// MaxProcesses is the number of the session's processes alive at once
	// (with cgroups: tasks, so threads count too).
	MaxProcesses int
	// MaxMemoryBytes is the memory of all the session's processes together.
	MaxMemoryBytes int64
}

// The session host lives inside its session's group, next to its commands
// (cgroup: <name>/host and <name>/cmds). The commands' group carries Spec
// exactly; the whole group carries Spec plus these reserves for the session
// host itself, so that shell builtins and subshells (goroutines of the
// session host) are bounded too.
const (
	// HostMemoryReserve is the session host's memory on top of
	// MaxMemoryBytes: its Go runtime, buffers and what builtins allocate
	// before the session host's own watchdog stops the command (see
	// sessionhost/memwatch.go, which keeps builtins well below it).
	HostMemoryReserve = 96 << 20
	// HostTaskReserve is the session host's own threads on top of twice
	// MaxProcesses: the Go runtime blocks one thread in wait for each
	// running child, plus a few of its own.
	HostTaskReserve = 64
)

// groupSpec is the bound of the whole group (session host and commands).
func groupSpec(s Spec) Spec {
	var g Spec
	if s.MaxMemoryBytes > 0 {
		g.MaxMemoryBytes = s.MaxMemoryBytes + HostMemoryReserve
	}
	if s.MaxProcesses > 0 {
		g.MaxProcesses = 2*s.MaxProcesses + HostTaskReserve
	}
	return g
}

// Limit names one of the limits, for messages.
type Limit int

const (
	// MemoryLimit is MaxMemoryPerShellMB.
	MemoryLimit Limit = iota + 1
	// ProcessLimit is MaxProcessesPerShell.
	ProcessLimit
)

// LimitError is returned by Add when the session already has MaxProcesses
// processes. Its text is meant to follow "tether: <command>: ".
type LimitError struct {
	Limit Limit
	Spec  Spec
}

func (e *LimitError) Error() string { return message(e.Limit, e.Spec) }

// ErrLimit matches every *LimitError with errors.Is.
var ErrLimit = errors.New("session limit reached")

// Is makes errors.Is(err, ErrLimit) true for a *LimitError.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func message(l Limit, s Spec) string {
	switch l {
	case MemoryLimit:
		return fmt.Sprintf("command stopped: session memory limit MaxMemoryPerShellMB (%d) reached", mb(s.MaxMemoryBytes))
	case ProcessLimit:
		return fmt.Sprintf("cannot start process: MaxProcessesPerShell (%d) reached in this session", s.MaxProcesses)
	}
	return "session limit reached"
}

func mb(b int64) int64 { return (b + (1<<20 - 1)) >> 20 }

// StopMessage is the stderr line (without newline) for a command stopped by
// limit l, e.g. "tether: command stopped: session memory limit
// MaxMemoryPerShellMB (64) reached".
func StopMessage(l Limit, s Spec) string { return "tether: " + message(l, s) }

// Counters are a Group's event counters (see Group.Events).
type Counters struct {
	OOMKills    int
	PidsMaxHits int
}

// Explain compares a Group's counters taken before and after a command and
// returns the StopMessage lines for the limits the command ran into.
func Explain(before, after Counters, s Spec) []string {
	var out []string
	if after.OOMKills > before.OOMKills {
		out = append(out, StopMessage(MemoryLimit, s))
	}
	if after.PidsMaxHits > before.PidsMaxHits {
		out = append(out, StopMessage(ProcessLimit, s))
	}
	return out
}

// backend is one mechanism's implementation of a Group.
type backend interface {
	add(pid int) error
	addHost(pid int) error
	update(s Spec) error
	events() (oom, pids int, err error)
	destroy() error
	describe() string
	spec() (Spec, error)
	prepareStart(cmd *exec.Cmd) error
	endCommand()
}

// Group is one session's limit domain.
type Group struct {
	mech Mechanism
	name string
	b    backend

	mu      sync.Mutex
	refused int // Add refusals (the process limit was already reached)
}

// validName reports whether name is usable as a group name: 1-201 of
// letters, digits, '_', '.', '@', '+' and '-', not starting with one of
// ".@+-". Written out rather than a regexp: every session host checks its
// group's name at start, and compiling `{0,200}` costs ~150 KB of garbage and
// a millisecond in each of them.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 201 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case i > 0 && (c == '.' || c == '@' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if !validName(name) || name == "." || name == ".." {
		return fmt.Errorf("limits: bad group name %q", name)
	}
	return nil
}

// GroupID is what a session's group name is derived from. Name is
// "u<uid>-<16 hex digits of sha256(user \0 session \0 state dir)>":
// unambiguous (no two users, sessions or agents share one, whatever their
// names hold) and it shows other users neither user nor session names.
type GroupID struct {
	UID      int
	User     string
	Session  string
	StateDir string // the agent's state directory (made absolute)
}

// Name is the group's cgroup directory name.
func (id GroupID) Name() string {
	dir := id.StateDir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	sum := sha256.Sum256([]byte(id.User + "\x00" + id.Session + "\x00" + dir))
	return "u" + strconv.Itoa(id.UID) + "-" + hex.EncodeToString(sum[:8])
}

// ErrExists is returned by Create when a live group of that name exists
// already: Create never reuses or re-owns a group.
var ErrExists = errors.New("limits: group exists already")

// Create makes the group named by id with the limits spec, writable by
// uid/gid where the session host needs to write (cgroup.procs, tasks) so
// that the session host, running as that user, can move its own children
// in; uid < 0 leaves ownership alone. With cgroups it needs the right to
// create cgroups (the agent, root). A group of that name that holds
// processes is an error (ErrExists); an empty one, left by a session that
// ended while no agent ran, is removed and made anew. With Rlimit nothing is
// created on disk: the group lives in the process that calls Add (the
// session host).
func Create(m Mechanism, id GroupID, uid, gid int, spec Spec) (*Group, error) {
	name := id.Name()
	var b backend
	var err error
	switch m {
	case Cgroup1:
		b, err = create1(name, uid, gid, spec)
	case Cgroup2:
		b, err = create2(name, uid, gid, spec)
	case Rlimit:
		b = newMonitor(spec)
	default:
		return nil, fmt.Errorf("limits: unknown mechanism %q", m)
	}
	if err != nil {
		return nil, err
	}
	return &Group{mech: m, name: name, b: b}, nil
}

// Open reopens the group made by Create for id (a restarted agent). A
// missing cgroup is an error matching fs.ErrNotExist. With Rlimit the limits
// are not stored anywhere: Open gives an unlimited group and the caller sets
// the spec with Update.
func Open(m Mechanism, id GroupID) (*Group, error) { return OpenName(m, id.Name()) }

// OpenName is Open by the group's name (GroupID.Name), for the session host,
// which is given the name by the agent.
func OpenName(m Mechanism, name string) (*Group, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var b backend
	var err error
	switch m {
	case Cgroup1:
		b, err = open1(name)
	case Cgroup2:
		b, err = open2(name)
	case Rlimit:
		b = newMonitor(Spec{})
	default:
		return nil, fmt.Errorf("limits: unknown mechanism %q", m)
	}
	if err != nil {
		return nil, err
	}
	return &Group{mech: m, name: name, b: b}, nil
}

// PrepareStart is meant for runspace's BeforeStart: it makes cmd start
// inside the commands' group, so that nothing it forks before Add runs is
// outside the limits. cgroup2: clone3(CLONE_INTO_CGROUP) through
// SysProcAttr.CgroupFD. cgroup1, where membership is per thread: the calling
// goroutine is locked to its OS thread and the thread moved into the
// commands' group, so the child is born there; Add (AfterStart, on the same
// goroutine) moves the thread back and unlocks it. If the start fails, Add
// is not called: EndCommand moves such threads back. Rlimit: nothing.
func (g *Group) PrepareStart(cmd *exec.Cmd) error { return g.b.prepareStart(cmd) }

// EndCommand is called when a command ends: it moves back the session host
// threads that PrepareStart moved and whose start failed.
func (g *Group) EndCommand() { g.b.endCommand() }

// Add puts a started process, and whatever children it already forked, under
// the group's limits. It is meant for runspace's AfterStart. A process that
// has already exited is not an error. When the session already has
// MaxProcesses processes it returns a *LimitError and does not add the
// process (the caller kills it).
func (g *Group) Add(pid int) error {
	err := g.b.add(pid)
	var le *LimitError
	if errors.As(err, &le) {
		g.mu.Lock()
		g.refused++
		g.mu.Unlock()
	}
	return err
}

// SetShell says pid (added with Add) is the session's long-lived shell
// (bash): under the rlimit fallback's monitor it counts toward the limits
// but does not keep the monitor scanning, so an idle bash session costs no
// CPU; Wake at each command's start resumes the scans. With cgroups the
// kernel counts everything: nothing to do.
func (g *Group) SetShell(pid int) {
	if m, ok := g.b.(*monitor); ok {
		m.mu.Lock()
		m.shell = pid
		m.mu.Unlock()
	}
}

// Wake tells the monitor a command starts (SetShell); a no-op with cgroups.
func (g *Group) Wake() {
	if m, ok := g.b.(*monitor); ok {
		m.mu.Lock()
		m.wake()
		m.mu.Unlock()
		select {
		case m.poke <- struct{}{}:
		default:
		}
	}
}

// AddHost places the session host process pid in the group's host part,
// inside the session's bound but outside the commands' limits (the agent
// calls it right after starting the session host). Rlimit: nothing.
func (g *Group) AddHost(pid int) error { return g.b.addHost(pid) }

// Update changes the limits of a live group.
func (g *Group) Update(spec Spec) error { return g.b.update(spec) }

// Spec reads back the limits in force.
func (g *Group) Spec() (Spec, error) { return g.b.spec() }

// Events returns the group's counters: processes killed for memory (the
// kernel's OOM kills in the group, or the monitor's kills), and times the
// process limit stopped a fork or a start (including Add refusals by this
// Group value). They only grow.
func (g *Group) Events() (oomKills int, pidsMaxHits int, err error) {
	oomKills, pidsMaxHits, err = g.b.events()
	g.mu.Lock()
	pidsMaxHits += g.refused
	g.mu.Unlock()
	return oomKills, pidsMaxHits, err
}

// Counters is Events as a Counters value.
func (g *Group) Counters() (Counters, error) {
	o, p, err := g.Events()
	return Counters{OOMKills: o, PidsMaxHits: p}, err
}

// Destroy kills the group's remaining processes and removes its cgroups
// (with Rlimit: kills the processes the monitor knows and stops it).
func (g *Group) Destroy() error {
	g.StopStarting() // this process's starting thread must not hold cmds/
	return g.b.destroy()
}

// Mechanism is the group's mechanism.
func (g *Group) Mechanism() Mechanism { return g.mech }

// Name is the group's name.
func (g *Group) Name() string { return g.name }

// Describe says what enforces the limits, for the log, e.g. "cgroup v1
// memory+pids at /sys/fs/cgroup/memory/tether/alice.s1".
func (g *Group) Describe() string { return g.b.describe() }
