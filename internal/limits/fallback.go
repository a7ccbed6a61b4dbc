package limits

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The rlimit mechanism's monitor scans /proc only while the session has
// live processes: every MonitorFast while something changes (processes come
// or go, memory grows), backing off to MonitorSlow while nothing does. With
// no process it sleeps with no timer until the next Add: an idle session
// costs nothing.
var (
	MonitorFast = 5 * time.Millisecond
	MonitorSlow = 500 * time.Millisecond
)

// asBackstop is the RLIMIT_AS given to each process for a memory limit l.
// It is well above l: the monitor kills a process over l with the
// MaxMemoryPerShellMB message, and RLIMIT_AS (which makes allocations fail
// with no signal, so nobody could tell why) only stops what grows faster
// than the monitor samples.
func asBackstop(l int64) int64 {
	if l <= 0 {
		return 0
	}
	return 2*l + 64<<20
}

// monitor is the rlimit mechanism: RLIMIT_AS (asBackstop) on every added
// process, and a goroutine in the process calling Add (the session host)
// that counts the session's processes and their resident memory and kills
// what is over.
//
// The session's processes are: the added processes and their descendants
// (parent chain), the members of their process groups (which catches
// background jobs reparented to init), and, when the caller is a session
// leader (a session host is: setsid), every process of its session.
type monitor struct {
	mu      sync.Mutex
	sp      Spec
	host    int              // the process running the monitor
	roots   map[int]uint64   // added pid -> start time
	pgids   map[int]struct{} // process groups of added processes
	oom     int              // processes killed for memory
	hits    int              // processes killed for the process limit
	stop    chan struct{}
	done    chan struct{}
	poke    chan struct{} // Add: a process to watch
	started bool
	closed  bool
	asleep  bool // waiting for a poke, no timer
	quiet   bool // the last scan found no process but the shell; none added since
	shell   int  // the session's shell (SetShell): alone, it does not keep the scans going
	running bool // a command of the shell runs (Wake … endCommand): scan on
	scans   int  // /proc scans by the monitor's loop
	last    usage
	// The cheap scans (members): the members the last scan found (pid →
	// start), the last pid allocated before it (0: the next is a full
	// scan), and the entries of /proc at the last full scan.
	known     map[int]uint64
	lastPid   int
	entries   int
	fullScans int // scans that read all of /proc
	treeScans int // scans that read the tree and the new pids
	// The shell's timeslices before the last scan, and before the last
	// scan that found it alone (quiet): if the shell has not run since, at
	// Wake, nothing was born in the session while the monitor slept.
	scanRuns, quietRuns uint64
}

// usage is what a scan saw, to tell whether anything changed.
type usage struct {
	n   int
	rss int64
}

func newMonitor(s Spec) *monitor {
	return &monitor{sp: s, roots: map[int]uint64{}, pgids: map[int]struct{}{}, poke: make(chan struct{}, 1)}
}

// state reports the loop's scans so far and whether it sleeps untimed.
func (m *monitor) state() (scans int, asleep bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.scans, m.asleep
}

// rlimitAS sets the soft RLIMIT_AS of pid, the hard one left as it is, so
// that a raised MaxMemoryPerShellMB can raise it again without privilege: a
// bash session's bash lives on, and every command it starts inherits its
// limit. (The monitor is the bound; this is only its backstop.)
func rlimitAS(pid int, limit int64) error {
	v := uint64(unix.RLIM_INFINITY)
	if limit > 0 {
		v = uint64(limit)
	}
	var cur unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_AS, nil, &cur); err != nil {
		return err
	}
	if v > cur.Max {
		v = cur.Max
	}
	return unix.Prlimit(pid, unix.RLIMIT_AS, &unix.Rlimit{Cur: v, Max: cur.Max}, nil)
}

func (m *monitor) add(pid int) error {
	p, err := readProc(pid)
	if err != nil {
		return nil // gone already
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("limits: group destroyed")
	}
	if m.host == 0 {
		m.host = os.Getpid()
	}
	// Quiet, the monitor's last scan saw no process but the shell, and
	// nothing was added since: no need to count again for a limit of 2 or
	// more (this scan of /proc, per command, was half of the monitor's).
	if m.sp.MaxProcesses > 0 && !(m.quiet && m.sp.MaxProcesses > 1) {
		if members, err := m.members(); err == nil && len(members) >= m.sp.MaxProcesses {
			m.hits++
			return &LimitError{Limit: ProcessLimit, Spec: m.sp}
		}
	}
	if m.sp.MaxMemoryBytes > 0 {
		err := rlimitAS(pid, asBackstop(m.sp.MaxMemoryBytes))
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("limits: set RLIMIT_AS of %d: %w", pid, err)
		}
		// Children forked before the limit was set.
		var below []int
		if treeScans() {
			below = tree([]int{pid}, map[int]bool{pid: true})
		} else if all, err := listProcs(); err == nil {
			below = descendants(all, pid)
		}
		for _, d := range below {
			_ = rlimitAS(d, asBackstop(m.sp.MaxMemoryBytes))
		}
	}
	m.roots[pid] = p.start
	if _, ok := m.pgids[p.pgrp]; !ok && !m.leader() {
		// Its group's earlier members were not looked for by pid: the
		// next scan reads all of /proc. (A session leader counts its whole
		// session, every group of it included.)
		m.lastPid = 0
	}
	m.pgids[p.pgrp] = struct{}{}
	m.quiet = false
	if !m.started {
		m.started = true
		m.stop, m.done = make(chan struct{}), make(chan struct{})
		go m.run()
	}
	select {
	case m.poke <- struct{}{}:
	default:
	}
	return nil
}

func (m *monitor) addHost(int) error { return nil }

func (m *monitor) prepareStart(*exec.Cmd) error { return nil }

func (m *monitor) endCommand() {
	m.mu.Lock()
	m.running = false
	m.mu.Unlock()
}

// settled reports whether the shell has not been on a CPU since the last
// scan began; if it has, Wake may not skip the pids of the sleep.
func (m *monitor) settled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shell == 0 || m.quietRuns == 0 {
		return true // nothing to settle: Wake does not skip
	}
	if runs, ok := timeslices(m.shell); ok && runs == m.quietRuns {
		return true
	}
	m.quietRuns = 0
	return false
}

// wake is Wake's part for the scans: the monitor slept with the shell
// alone, and if the shell has not been on a CPU since before that scan, no
// process was born in the session meanwhile (the session host's own go
// through Add), so the next scan looks only at the pids from now on —
// not at every pid the host handed out while the session was idle.
func (m *monitor) wake() {
	m.running = true // until EndCommand: bash may not have forked yet
	if !m.quiet || m.quietRuns == 0 || m.lastPid == 0 || !treeScans() {
		return
	}
	now, err := readLastPid()
	if err != nil {
		return
	}
	if runs, ok := timeslices(m.shell); ok && runs == m.quietRuns {
		m.lastPid = now
	}
}

// members lists the session's live processes. m.mu is held. It reads the
// process tree and the pids allocated since the last scan (proc.go) when it
// can, and every process of /proc otherwise: the first time, after more new
// pids than a full scan reads, or where the kernel lacks the files.
func (m *monitor) members() ([]proc, error) {
	m.scanRuns = 0
	if m.shell != 0 && treeScans() {
		m.scanRuns, _ = timeslices(m.shell)
	}
	if m.lastPid != 0 && treeScans() {
		if now, err := readLastPid(); err == nil {
			if ps, ok := m.membersTree(now); ok {
				m.remember(ps, now)
				return ps, nil
			}
		}
	}
	// The last pid before the listing: what is born during it is looked at
	// again by the next scan.
	now, lerr := 0, error(nil)
	if treeScans() {
		now, lerr = readLastPid()
	}
	uid := m.uid()
	all, entries, err := listProcsN(uid)
	if err != nil {
		m.lastPid = 0
		return nil, err
	}
	m.fullScans++
	m.entries = entries
	in := map[int]bool{}
	for pid := range m.roots {
		in[pid] = true
		for _, d := range descendants(all, pid) {
			in[d] = true
		}
	}
	ps := m.filter(all, in)
	if lerr != nil {
		now = 0
	}
	m.remember(ps, now)
	return ps, nil
}

// uid is whose processes count: this user's (a session host cannot signal
// another user's), or for root anyone's (-1).
func (m *monitor) uid() int {
	if uid := os.Geteuid(); uid != 0 {
		return uid
	}
	return -1
}

// remember keeps what a scan found for the next one: the members, to follow
// them when they leave the tree, and the last pid then allocated (0: the
// next scan is a full one).
func (m *monitor) remember(ps []proc, lastPid int) {
	clear(m.known)
	if m.known == nil {
		m.known = make(map[int]uint64, len(ps))
	}
	for _, p := range ps {
		m.known[p.pid] = p.start
	}
	m.lastPid = lastPid
}

// membersTree is members from the tree below the session host (and the
// added processes), the members of the last scan that left it, and the pids
// allocated since; ok is false when those are too many (a full scan is
// cheaper).
func (m *monitor) membersTree(now int) (ps []proc, ok bool) {
	leader := m.leader()
	uid := m.uid()
	seen := map[int]bool{m.host: true}
	under := map[int]bool{} // an added process or below one
	var cands []int
	queue := []int{m.host}
	for pid := range m.roots {
		if !seen[pid] {
			// Not the host's child (a test's host is not the parent): walked
			// from itself.
			seen[pid] = true
			cands = append(cands, pid)
			queue = append(queue, pid)
		}
		under[pid] = true
	}
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		for _, c := range children(q, nil) {
			if !seen[c] {
				seen[c] = true
				under[c] = under[q] || under[c]
				cands = append(cands, c)
				queue = append(queue, c)
			}
		}
	}
	for pid := range m.known {
		if !seen[pid] {
			seen[pid] = true
			cands = append(cands, pid)
		}
	}
	var buf [2048]byte
	var all []proc
	look := func(pid int) {
		p, err := readProcBuf(pid, buf[:])
		if err != nil {
			return
		}
		if uid >= 0 {
			var st unix.Stat_t
			if unix.Stat("/proc/"+strconv.Itoa(pid), &st) != nil || int(st.Uid) != uid {
				return
			}
		}
		all = append(all, p)
	}
	for _, pid := range cands {
		look(pid)
	}
	// Born since the last scan and gone from the tree already (its parent
	// exited): a member only by its session or process group. Each costs
	// what an entry of a full scan does (one stat; most have ended), so
	// past as many pids as /proc had entries, a full scan is cheaper.
	ok = newPids(m.lastPid, now, max(1024, m.entries), func(pid int) {
		if seen[pid] {
			return
		}
		if uid >= 0 {
			var st unix.Stat_t
			if unix.Stat("/proc/"+strconv.Itoa(pid), &st) != nil || int(st.Uid) != uid {
				return
			}
		}
		p, err := readProcBuf(pid, buf[:])
		if err != nil {
			return
		}
		_, inPgid := m.pgids[p.pgrp]
		if (inPgid || (leader && p.sid == m.host)) && isProcess(pid) {
			seen[pid] = true
			all = append(all, p)
		}
	})
	if !ok {
		return nil, false
	}
	m.treeScans++
	return m.filter(all, under), true
}

// leader reports whether the monitor's process leads its session (a
// session host does: setsid), whose every process then counts.
func (m *monitor) leader() bool {
	sid, err := unix.Getsid(0)
	return err == nil && sid == m.host
}

// filter keeps the session's live processes of all: the added ones and
// those below them (in), the members of their process groups (which
// catches background jobs reparented to init), and, when the monitor leads
// its session, every process of that session. It forgets added processes
// that ended and process groups that are empty. m.mu is held.
func (m *monitor) filter(all []proc, in map[int]bool) []proc {
	byPid := make(map[int]proc, len(all))
	for _, p := range all {
		byPid[p.pid] = p
	}
	// Forget added processes that ended (or whose pid was reused).
	for pid, start := range m.roots {
		if p, ok := byPid[pid]; !ok || p.start != start || p.zombie {
			delete(m.roots, pid)
		}
	}
	livePgids := map[int]bool{}
	leader := m.leader()
	var out []proc
	for _, p := range all {
		if p.pid == m.host || p.zombie {
			continue
		}
		_, inPgid := m.pgids[p.pgrp]
		if inPgid {
			livePgids[p.pgrp] = true
		}
		if in[p.pid] || inPgid || (leader && p.sid == m.host) {
			out = append(out, p)
		}
	}
	for g := range m.pgids {
		if !livePgids[g] {
			delete(m.pgids, g)
		}
	}
	return out
}

// pause waits d, or less if stopped; it reports false when stopped.
func (m *monitor) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.stop:
		return false
	case <-t.C:
		return true
	}
}

func (m *monitor) run() {
	defer close(m.done)
	interval := MonitorFast
	unsettled := 0
	for {
		live, changed := m.enforce()
		if !live && !m.settled() && unsettled < 3 {
			// The shell ran during the scan (bash prints its prompt after
			// a command): one more scan, so that Wake can tell whether it
			// ran while the monitor slept.
			unsettled++
			if !m.pause(MonitorFast) {
				return
			}
			continue
		}
		unsettled = 0
		if !live {
			m.mu.Lock()
			m.asleep = true
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-m.poke:
			}
			m.mu.Lock()
			m.asleep = false
			m.mu.Unlock()
			// add counted the processes just now: the next scan comes
			// MonitorFast later (a short command has ended by then, and
			// a scan reads every process of the host).
			if !m.pause(MonitorFast) {
				return
			}
			interval = MonitorFast
			continue
		}
		if changed {
			interval = MonitorFast
		} else if interval = 2 * interval; interval > MonitorSlow {
			interval = MonitorSlow
		}
		t := time.NewTimer(interval)
		select {
		case <-m.stop:
			t.Stop()
			return
		case <-m.poke:
			interval = MonitorFast
		case <-t.C:
		}
		t.Stop()
	}
}

// enforce scans the session's processes, kills the newest over
// MaxProcesses and, while the session's resident memory is over
// MaxMemoryBytes, the biggest process. It reports whether the session has
// live processes, and whether anything changed since the last scan.
func (m *monitor) enforce() (live, changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sp.MaxProcesses == 0 && m.sp.MaxMemoryBytes == 0 {
		return false, false // nothing to enforce: sleep until Update or Add
	}
	m.scans++
	ps, err := m.members()
	if err != nil {
		return true, true
	}
	u := usage{n: len(ps)}
	for _, p := range ps {
		u.rss += p.rss
	}
	changed = u.n != m.last.n || u.rss > m.last.rss+1<<20 || u.rss < m.last.rss-1<<20
	m.last = u
	live = m.running
	for _, p := range ps {
		if p.pid != m.shell {
			live = true
			break
		}
	}
	m.quiet = !live
	if m.quiet {
		m.quietRuns = m.scanRuns
	}
	if max := m.sp.MaxProcesses; max > 0 && len(ps) > max {
		sort.Slice(ps, func(i, j int) bool { // newest first
			if ps[i].start != ps[j].start {
				return ps[i].start > ps[j].start
			}
			return ps[i].pid > ps[j].pid
		})
		for _, p := range ps[:len(ps)-max] {
			if kill(p.pid, p.start) == nil {
				m.hits++
			}
		}
		changed = true
		ps = ps[len(ps)-max:]
	}
	if lim := m.sp.MaxMemoryBytes; lim > 0 {
		var total int64
		for _, p := range ps {
			total += p.rss
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].rss > ps[j].rss })
		for _, p := range ps {
			if total <= lim {
				break
			}
			if kill(p.pid, p.start) == nil {
				m.oom++
				total -= p.rss
				changed = true
			}
		}
	}
	return live, changed
}

// update changes the limits; RLIMIT_AS of the added processes is changed
// too (raising a hard limit needs CAP_SYS_RESOURCE: not raising it is not
// an error).
func (m *monitor) update(s Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sp = s
	m.quiet = false
	if m.started {
		select {
		case m.poke <- struct{}{}:
		default:
		}
	}
	var first error
	for pid := range m.roots {
		if err := rlimitAS(pid, asBackstop(s.MaxMemoryBytes)); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.EPERM) && first == nil {
			first = fmt.Errorf("limits: set RLIMIT_AS of %d: %w", pid, err)
		}
	}
	return first
}

func (m *monitor) spec() (Spec, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sp, nil
}

func (m *monitor) events() (int, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.oom, m.hits, nil
}

func (m *monitor) destroy() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	started := m.started
	m.mu.Unlock()
	if started {
		close(m.stop)
		<-m.done
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.host == 0 {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := m.members()
		if err != nil {
			return fmt.Errorf("limits: destroy: %w", err)
		}
		if len(ps) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("limits: destroy: %d processes left", len(ps))
		}
		for _, p := range ps {
			_ = kill(p.pid, p.start)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (m *monitor) describe() string {
	return "rlimit (RLIMIT_AS per process as a backstop) and a /proc monitor of the session's processes while it has any"
}
