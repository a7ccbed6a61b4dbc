package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procIDs are a process's process group and session ids (/proc/PID/stat).
func procIDs(pid int) (pgrp, sid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	j := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[j+1:]) // state ppid pgrp session …
	if len(f) < 4 {
		return 0, 0, false
	}
	fmt.Sscan(f[2], &pgrp)
	fmt.Sscan(f[3], &sid)
	return pgrp, sid, true
}

// procsOf are the pids of uid's processes whose command line contains all
// of words.
func procsOf(uid int, words ...string) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		all := true
		for _, w := range words {
			all = all && strings.Contains(cl, w)
		}
		if all {
			var pid int
			fmt.Sscan(filepath.Base(d), &pid)
			out = append(out, pid)
		}
	}
	return out
}

// TestSSHSessionHostsLeaveTheLogin: the session host a stdio agent starts
// is in a process session and group of its own, not the ssh login's (so
// a hangup or a kill of the login's group does not reach it); on a host
// whose logind says KillUserProcesses=yes and where neither systemd-run
// --user nor lingering can help (this machine has no systemd), `new` says
// so once, in one line, and not again on the next new.
func TestSSHSessionHostsLeaveTheLogin(t *testing.T) {
	conf := filepath.Join(ShortTempDir(t), "logind.conf")
	os.WriteFile(conf, []byte("[Login]\nKillUserProcesses=yes\n"), 0o644)
	w := newSSHWorld(t, "SetEnv TETHER_LOGIND_CONF="+conf)
	c := w.client
	r := c.Run("new", "--name", "a", "ssh://web1")
	if r.Code != 0 || r.Stdout != "ssh://web1/a\n" {
		t.Fatalf("new: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if n := strings.Count(r.Stderr, "KillUserProcesses=yes"); n != 1 || !strings.Contains(r.Stderr, "loginctl enable-linger "+w.user.Name) {
		t.Fatalf("new did not say once that sessions may end at logout: %q", r.Stderr)
	}
	if r := c.Run("new", "--name", "b", "ssh://web1"); r.Code != 0 || strings.Contains(r.Stderr, "KillUserProcesses") {
		t.Fatalf("the second new said it again (or failed): exit %d %q", r.Code, r.Stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", "ssh://web1/a", "echo started; sleep 30")
	var out SyncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	WaitFor(t, 30*time.Second, "the command to start", func() bool { return strings.Contains(out.String(), "started") })
	agents := procsOf(w.user.UID, "serve", "--stdio")
	hosts := procsOf(w.user.UID, "session-host")
	if len(agents) == 0 || len(hosts) == 0 {
		t.Fatalf("stdio agents %v, session hosts %v: want both running", agents, hosts)
	}
	for _, a := range agents {
		ag, as, _ := procIDs(a)
		for _, h := range hosts {
			hg, hs, ok := procIDs(h)
			if !ok {
				continue
			}
			if hs == as || hg == ag {
				t.Fatalf("session host %d (group %d, session %d) is in the ssh login's group or session (agent %d: %d, %d)", h, hg, hs, a, ag, as)
			}
			if hs != h {
				t.Errorf("session host %d is not the leader of its own session (%d)", h, hs)
			}
		}
	}
}
