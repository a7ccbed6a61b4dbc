package limits

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// proc is one process as /proc/<pid>/stat shows it.
type proc struct {
	pid, ppid, pgrp, sid int
	zombie               bool
	start                uint64 // start time, clock ticks after boot
	rss                  int64  // bytes
}

var pageSize = int64(os.Getpagesize())

// ProcStart is process pid's start time in clock ticks after boot (field
// 22 of /proc/PID/stat), which tells a process from a later one that
// reuses its pid.
func ProcStart(pid int) (uint64, error) {
	p, err := readProc(pid)
	return p.start, err
}

// exited reports whether process pid has ended: a zombie, or reaped. Add
// leaves such a process alone: it has nothing left to limit, and the
// /proc/PID/cgroup of a zombie names the root cgroups, so it looked like a
// process to move: on cgroup v1 the write of its pid into cgroup.procs
// waited ~9 ms for the kernel's cgroup lock and the search for its
// children read all of /proc (~3 ms), after every short program of a
// builtin session that ended before its AfterStart (#18: a module
// command's `#!/bin/sh` took 5 ms more than in a bash session).
func exited(pid int) bool {
	p, err := readProc(pid)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	return p.zombie
}

func readProc(pid int) (proc, error) {
	var buf [2048]byte
	return readProcBuf(pid, buf[:])
}

// readProcBuf reads /proc/<pid>/stat with plain open, read and close into
// buf: a monitor scans every process of the host several times per
// command, and os.ReadFile's extra calls (fstat, the poller's fcntl, a
// second read for EOF) and strings.Fields' allocations were most of a
// user-mode session host's CPU in a fan-out.
func readProcBuf(pid int, buf []byte) (proc, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return proc{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil {
		return proc{}, &os.PathError{Op: "read", Path: path, Err: err}
	}
	b := buf[:max(n, 0)]
	// The command name, in parentheses, may hold anything: split after the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || n == len(buf) {
		return proc{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	var f [22][]byte
	k := 0
	for _, w := range bytes.Fields(b[i+1:]) {
		if k == len(f) {
			break
		}
		f[k] = w
		k++
	}
	if k < len(f) {
		return proc{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	// f[0] is field 3 (state): field n is f[n-3].
	p := proc{pid: pid, zombie: string(f[0]) == "Z" || string(f[0]) == "X"}
	p.ppid = atoi(f[1])
	p.pgrp = atoi(f[2])
	p.sid = atoi(f[3])
	p.start = uint64(atoi(f[19]))
	p.rss = int64(atoi(f[21])) * pageSize
	return p, nil
}

// atoi reads a decimal number of /proc (0 for anything else).
func atoi(b []byte) int {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		v = v*10 + int(c-'0')
	}
	if neg {
		return -v
	}
	return v
}

// listProcs reads every process in /proc (those that vanish meanwhile are
// left out).
func listProcs() ([]proc, error) { return listProcsOf(-1) }

// listProcsOf is listProcs for the processes of uid only (-1: all),
// telling them by /proc/<pid>'s owner, one fstatat, before reading a stat
// file: a user's session host cannot signal another user's processes, so
// it has no use for counting them, and reading them was most of its scan.
func listProcsOf(uid int) ([]proc, error) {
	ps, _, err := listProcsN(uid)
	return ps, err
}

// listProcsN is listProcsOf, and how many entries /proc had.
func listProcsN(uid int) ([]proc, int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, 0, err
	}
	out := make([]proc, 0, len(names))
	var buf [2048]byte
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if uid >= 0 {
			var st unix.Stat_t
			if unix.Fstatat(int(d.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || int(st.Uid) != uid {
				continue
			}
		}
		if p, err := readProcBuf(pid, buf[:]); err == nil {
			out = append(out, p)
		}
	}
	return out, len(names), nil
}

// descendants returns the pids in all whose parent chain reaches pid
// (not pid itself).
func descendants(all []proc, pid int) []int {
	children := map[int][]int{}
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		for _, c := range children[q] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// kill sends SIGKILL to pid if it is still the process that started at
// start (a pidfd makes the check and the signal race-free against pid reuse).
func kill(pid int, start uint64) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			if p, err := readProc(pid); err != nil || p.start != start {
				return nil
			}
			return ignoreESRCH(syscall.Kill(pid, syscall.SIGKILL))
		}
		return ignoreESRCH(err)
	}
	defer unix.Close(fd)
	if p, err := readProc(pid); err != nil || p.start != start {
		return nil
	}
	return ignoreESRCH(unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0))
}

func ignoreESRCH(err error) error {
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Cheap scans. A full scan (listProcsOf) reads every entry of /proc: on a
// host with 2,400 processes that was ~5,000 system calls, several times per
// command of every user-mode session (61 % of the session hosts' CPU in a
// fan-out over ssh). A session's processes are found instead from two
// things the kernel keeps: the process tree below the session host
// (/proc/PID/task/TID/children), and the pids allocated since the last scan
// (the kernel hands pids out in increasing order, wrapping at pid_max, and
// ns_last_pid is the last one given), which is where a process that left the
// tree at once — a background job whose parent exited, reparented to init —
// can be; one that left it later was seen before and is followed by pid.

// lastPidFile is the last pid allocated in this pid namespace.
const lastPidFile = "/proc/sys/kernel/ns_last_pid"

var (
	treeOnce sync.Once
	treeOK   bool // /proc/thread-self/children and ns_last_pid are there
	pidMax   int
)

// treeScans reports whether the cheap scans work here (CONFIG_PROC_CHILDREN,
// a /proc of this pid namespace).
func treeScans() bool {
	treeOnce.Do(func() {
		if unix.Access("/proc/thread-self/children", unix.R_OK) != nil {
			return
		}
		if _, err := readLastPid(); err != nil {
			return
		}
		var buf [32]byte
		n, err := readSmall("/proc/sys/kernel/pid_max", buf[:])
		if err != nil {
			return
		}
		pidMax = atoi(bytes.TrimSpace(buf[:n]))
		treeOK = pidMax > 0
	})
	return treeOK
}

// readSmall reads a small /proc file into buf with open, read and close.
func readSmall(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.Read(fd, buf)
}

func readLastPid() (int, error) {
	var buf [32]byte
	n, err := readSmall(lastPidFile, buf[:])
	if err != nil {
		return 0, err
	}
	v := atoi(bytes.TrimSpace(buf[:max(n, 0)]))
	if v <= 0 {
		return 0, fmt.Errorf("%s: %q", lastPidFile, buf[:max(n, 0)])
	}
	return v, nil
}

// newPids calls f for each pid allocated after last up to now (the kernel's
// cyclic order: past pid_max it starts again from 1). It reports false, and
// calls nothing, when that is more than limit pids.
func newPids(last, now, limit int, f func(int)) bool {
	span := now - last
	if now < last {
		span = pidMax - last + now
	}
	if span > limit {
		return false
	}
	for i, p := 0, last; i < span; i++ {
		if p++; p > pidMax {
			p = 1
		}
		f(p)
	}
	return true
}

// isProcess tells a process (thread-group leader) from a thread: a thread's
// id opens as /proc/TID although /proc does not list it.
func isProcess(pid int) bool {
	var buf [1024]byte
	n, err := readSmall("/proc/"+strconv.Itoa(pid)+"/status", buf[:])
	if err != nil {
		return false
	}
	b := buf[:max(n, 0)]
	i := bytes.Index(b, []byte("\nTgid:"))
	if i < 0 {
		return false
	}
	b = b[i+len("\nTgid:"):]
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		b = b[:j]
	}
	return atoi(bytes.TrimSpace(b)) == pid
}

// children appends pid's child processes to out: the children files of
// each of its threads.
func children(pid int, out []int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	d, err := os.Open(dir)
	if err != nil {
		return out
	}
	tids, _ := d.Readdirnames(-1)
	d.Close()
	var buf [4096]byte
	for _, tid := range tids {
		fd, err := unix.Open(dir+"/"+tid+"/children", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// "pid pid pid " — possibly longer than buf: a number cut at the
		// end of a read continues in the next.
		v, in := 0, false
		for {
			n, err := unix.Read(fd, buf[:])
			if n <= 0 || err != nil {
				break
			}
			for _, c := range buf[:n] {
				if c >= '0' && c <= '9' {
					v, in = v*10+int(c-'0'), true
				} else if in {
					out = append(out, v)
					v, in = 0, false
				}
			}
		}
		if in {
			out = append(out, v)
		}
		unix.Close(fd)
	}
	return out
}

// tree returns the processes below the given pids (not the pids
// themselves), read from the children files, in[pid] set for each.
func tree(from []int, in map[int]bool) []int {
	var out []int
	queue := append([]int(nil), from...)
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		for _, c := range children(q, nil) {
			if !in[c] {
				in[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// timeslices is how many times pid's main thread has been on a CPU
// (/proc/PID/schedstat's third field): unchanged, it ran nothing — and so
// forked nothing — in between.
func timeslices(pid int) (uint64, bool) {
	var buf [128]byte
	n, err := readSmall("/proc/"+strconv.Itoa(pid)+"/schedstat", buf[:])
	if err != nil || n <= 0 {
		return 0, false
	}
	f := bytes.Fields(buf[:n])
	if len(f) < 3 {
		return 0, false
	}
	v := atoi(f[2])
	return uint64(v), v > 0
}
