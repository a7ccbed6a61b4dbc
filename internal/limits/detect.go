package limits

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// parentName is the cgroup under which every session's group lives.
const parentName = "tether"

// mount is a cgroup mount from /proc/self/mountinfo.
type mount struct {
	dir     string
	v2      bool
	options []string // super options (v1: the controllers)
}

func cgroupMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+3 {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		var opts []string
		if len(fields) > sep+3 {
			opts = strings.Split(fields[sep+3], ",")
		}
		out = append(out, mount{dir: unescapeMount(fields[4]), v2: fstype == "cgroup2", options: opts})
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// v1Dirs finds the v1 hierarchies holding the memory and pids controllers.
func v1Dirs() (mem, pids string, err error) {
	ms, err := cgroupMounts()
	if err != nil {
		return "", "", err
	}
	for _, m := range ms {
		if m.v2 {
			continue
		}
		if mem == "" && slices.Contains(m.options, "memory") {
			mem = m.dir
		}
		if pids == "" && slices.Contains(m.options, "pids") {
			pids = m.dir
		}
	}
	return mem, pids, nil
}

// v2Dir finds the cgroup v2 mount (/sys/fs/cgroup preferred).
func v2Dir() (string, error) {
	ms, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	dir := ""
	for _, m := range ms {
		if m.v2 && (dir == "" || m.dir == "/sys/fs/cgroup") {
			dir = m.dir
		}
	}
	return dir, nil
}

func controllers(dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	return strings.Fields(string(b))
}

func writable(path string) bool { return unix.Access(path, unix.W_OK) == nil }

// canCreateUnder says whether this process can make <root>/tether/<name>:
// either tether exists and is writable, or root is.
func canCreateUnder(root string, file string) bool {
	p := filepath.Join(root, parentName)
	if _, err := os.Stat(p); err == nil {
		return writable(p) && (file == "" || writable(filepath.Join(p, file)))
	}
	return writable(root) && (file == "" || writable(filepath.Join(root, file)))
}

// Detect finds the best mechanism this host offers the current process (root
// or not): cgroup2 with the memory and pids controllers and a writable
// tether/ parent (or root to make it under), else the cgroup v1 memory and
// pids hierarchies writable the same way, else rlimit.
func Detect() Mechanism {
	m, _ := DetectDetail()
	return m
}

// DetectDetail is Detect with a sentence saying why, for the log.
func DetectDetail() (Mechanism, string) {
	var why []string
	if dir, err := v2Dir(); err != nil {
		why = append(why, "cgroup2: "+err.Error())
	} else if dir == "" {
		why = append(why, "no cgroup2 mount")
	} else {
		c := controllers(dir)
		switch {
		case !slices.Contains(c, "memory") || !slices.Contains(c, "pids"):
			why = append(why, fmt.Sprintf("cgroup2 at %s lacks the memory or pids controller (has %q)", dir, strings.Join(c, " ")))
		case !canCreateUnder(dir, "cgroup.subtree_control"):
			why = append(why, fmt.Sprintf("cgroup2 at %s not writable", dir))
		default:
			return Cgroup2, fmt.Sprintf("cgroup v2 memory+pids under %s", filepath.Join(dir, parentName))
		}
	}
	if mem, pids, err := v1Dirs(); err != nil {
		why = append(why, "cgroup v1: "+err.Error())
	} else if mem == "" || pids == "" {
		why = append(why, "no cgroup v1 memory and pids hierarchies")
	} else if !canCreateUnder(mem, "") || !canCreateUnder(pids, "") {
		why = append(why, fmt.Sprintf("cgroup v1 %s or %s not writable", mem, pids))
	} else {
		d := fmt.Sprintf("cgroup v1 memory+pids under %s and %s", filepath.Join(mem, parentName), filepath.Join(pids, parentName))
		if len(why) > 0 {
			d += " (" + strings.Join(why, "; ") + ")"
		}
		return Cgroup1, d
	}
	return Rlimit, "rlimit and /proc monitor (" + strings.Join(why, "; ") + ")"
}
