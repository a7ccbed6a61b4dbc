package limits

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
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
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
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
	return out, nil
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
