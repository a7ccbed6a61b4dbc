package e2e

// Attacks on the root agent through files a user controls (issue 11, "No
// root file work in user-owned places"). Each test plants what a local user
// could plant and checks that the agent neither gives her a root-owned file
// nor crashes or hangs. Each one failed against ba048d0's agent. They run as
// root with real users (tt-alice); scratch targets are directories the test
// makes, never real system directories.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rootScratch is a root-owned directory with mode perm, reachable by path.
func rootScratch(t *testing.T, perm os.FileMode) string {
	t.Helper()
	d := ShortTempDir(t)
	os.Chmod(filepath.Dir(d), 0o755)
	if err := os.Chmod(d, perm); err != nil {
		t.Fatal(err)
	}
	return d
}

func owner(t *testing.T, p string) (uint32, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid, fi.Mode()
}

// runFor runs tether as c, giving up after d (a hang is a failure, not a
// stuck test).
func runFor(t *testing.T, c *Client, d time.Duration, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := c.Command(ctx, args...)
	var out, errb SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tether %v did not answer within %s (the agent is stuck)", args, d)
	}
	code := 0
	if err != nil {
		if cmd.ProcessState == nil {
			t.Fatalf("tether %v: %v", args, err)
		}
		code = cmd.ProcessState.ExitCode()
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// procStatus reads a number (kB for memory) from /proc/PID/status.
func procStatus(t *testing.T, pid int, key string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("agent process gone: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// TestAttackClosedSymlink: STATE/s/USER/.closed replaced by a symlink (as a
// user could when she owned STATE/s/USER) must not make the agent chown the
// target or remove files in it; the agent takes STATE/s/USER back and moves
// the symlink aside, and the user can no longer replace entries there.
func TestAttackClosedSymlink(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	alice.MustRun("list", a.Host())
	target := rootScratch(t, 0o755)
	victim := filepath.Join(target, "victim.json")
	if err := os.WriteFile(victim, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The layout before the fix: STATE/s/USER owned by the user, with her
	// .closed pointing at the target.
	ud := filepath.Join(a.State, "s", ua.Name)
	os.MkdirAll(ud, 0o700)
	os.Chown(ud, ua.UID, ua.GID)
	os.RemoveAll(filepath.Join(ud, ".closed"))
	if err := ua.As(func() error { return os.Symlink(target, filepath.Join(ud, ".closed")) }); err != nil {
		t.Fatal(err)
	}
	alice.MustRun("new", "--name", "victim", a.Host())
	if uid, mode := owner(t, target); uid != 0 || mode.Perm() != 0o755 {
		t.Fatalf("the symlink's target is now uid %d mode %o: the agent chowned through .closed", uid, mode.Perm())
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("the agent removed a file through .closed: %v", err)
	}
	if uid, mode := owner(t, ud); uid != 0 || mode.Perm() != 0o711 {
		t.Fatalf("STATE/s/USER is uid %d mode %o, want root 0711", uid, mode.Perm())
	}
	if uid, mode := owner(t, filepath.Join(ud, ".closed")); uid != uint32(ua.UID) || !mode.IsDir() {
		t.Fatalf(".closed is uid %d %v, want a directory of the user", uid, mode)
	}
	if !strings.Contains(a.Log(), "moved aside") {
		t.Errorf("the agent did not log moving the symlink aside")
	}
	// And now she cannot do it again.
	err := ua.As(func() error {
		if err := os.Rename(filepath.Join(ud, ".closed"), filepath.Join(ud, "x")); err == nil {
			return fmt.Errorf("renamed .closed")
		}
		if err := os.Symlink(target, filepath.Join(ud, "planted")); err == nil {
			return fmt.Errorf("made a symlink in STATE/s/USER")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAttackHostLogRace: a racer planting host.log as a symlink in each new
// session directory must never get a file chowned: the agent never opens
// host.log; the session host opens it as the user, without following it.
func TestAttackHostLogRace(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	alice.MustRun("list", a.Host())
	target := filepath.Join(rootScratch(t, 0o755), "root-file")
	if err := os.WriteFile(target, []byte("root's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const spawns = 15
	ud := filepath.Join(a.State, "s", ua.Name)
	var stop atomic.Bool
	var tries atomic.Int64
	racer := make(chan error, 1)
	go func() {
		racer <- ua.As(func() error {
			for !stop.Load() {
				for i := range spawns {
					os.Symlink(target, filepath.Join(ud, fmt.Sprintf("race%d", i), "host.log"))
					tries.Add(1)
				}
			}
			return nil
		})
	}()
	for i := range spawns {
		alice.Run("new", "--name", fmt.Sprintf("race%d", i), a.Host()) // may fail: she broke her own session
		if uid, _ := owner(t, target); uid != 0 {
			stop.Store(true)
			t.Fatalf("spawn %d: the racer got %s chowned to uid %d", i, target, uid)
		}
	}
	stop.Store(true)
	if err := <-racer; err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "root's\n" {
		t.Fatalf("target written: %q", b)
	}
	t.Logf("%d racer attempts over %d spawns", tries.Load(), spawns)
}

// TestAttackTombstoneDevZeroAndFIFO: a tombstone linked to /dev/zero must
// not make the agent read without end (ba048d0: OOM), nor a FIFO pin a
// thread per request; both answer "no session" at once.
func TestAttackTombstoneDevZeroAndFIFO(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	alice.MustRun("new", "--name", "first", a.Host()) // makes her .closed
	closed := filepath.Join(a.State, "s", ua.Name, ".closed")
	err := ua.As(func() error {
		if err := os.Symlink("/dev/zero", filepath.Join(closed, "zero.json")); err != nil {
			return err
		}
		return syscall.Mkfifo(filepath.Join(closed, "fifo.json"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := a.PID()
	threads := procStatus(t, pid, "Threads")
	for i := 0; i < 10; i++ {
		for _, name := range []string{"zero", "fifo"} {
			r := runFor(t, alice, 30*time.Second, "connect", a.Host()+"/"+name)
			if r.Code == 0 || !strings.Contains(r.Stderr, "no session "+name) {
				t.Fatalf("connect %s: exit %d %q", name, r.Code, r.Stderr)
			}
		}
	}
	if rss := procStatus(t, pid, "VmRSS"); rss > 200<<10 {
		t.Fatalf("agent RSS %d kB after reading planted tombstones", rss)
	}
	if now := procStatus(t, pid, "Threads"); now > threads+5 {
		t.Fatalf("agent threads %d -> %d: requests pinned threads", threads, now)
	}
	if !strings.Contains(a.Log(), "tombstone refused") {
		t.Errorf("planted tombstones not logged")
	}
}

// TestAttackMetaAtStart: a meta.json planted as a FIFO or a /dev/zero link
// must not stop a restarted agent from serving (ba048d0: discovery hung
// before listening, or the agent died at every start); the bad entries are
// skipped and logged, the real session is found.
func TestAttackMetaAtStart(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "real", a.Host()))
	alice.MustRun("invoke", addr, "v=kept")
	a.Term()
	ud := filepath.Join(a.State, "s", ua.Name)
	for _, n := range []string{"afifo", "zzero"} {
		os.Mkdir(filepath.Join(ud, n), 0o700)
		os.Chown(filepath.Join(ud, n), ua.UID, ua.GID)
	}
	err := ua.As(func() error {
		if err := syscall.Mkfifo(filepath.Join(ud, "afifo", "meta.json"), 0o600); err != nil {
			return err
		}
		return os.Symlink("/dev/zero", filepath.Join(ud, "zzero", "meta.json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Restart() // fails the test if the agent does not listen
	b := alice.WithKey()
	if l := runFor(t, b, 30*time.Second, "list", a.Host()); !strings.Contains(l.Stdout, "real") {
		t.Fatalf("the real session was not found after the restart: %q %q", l.Stdout, l.Stderr)
	}
	if got := runFor(t, alice, 30*time.Second, "invoke", addr, "echo $v"); got.Stdout != "kept\n" {
		t.Fatalf("real session after restart: %q %q", got.Stdout, got.Stderr)
	}
	log := a.Log()
	for _, n := range []string{"afifo", "zzero"} {
		if !strings.Contains(log, "skipping session entry") || !strings.Contains(log, "session="+n) {
			t.Errorf("bad entry %s not logged as skipped", n)
		}
	}
}

// TestAttackAuthorizedKeysSymlinkToRootOnly: authorized_keys is read as the
// user, as sshd does: a symlink to a file only root can read is refused.
func TestAttackAuthorizedKeysSymlinkToRootOnly(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	keys := filepath.Join(rootScratch(t, 0o700), "root-keys")
	b, _ := os.ReadFile(alice.PubKey())
	if err := os.WriteFile(keys, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(ua.Home, ".ssh", "authorized_keys")
	os.Remove(ak)
	t.Cleanup(func() { os.Remove(ak) })
	if err := ua.As(func() error { return os.Symlink(keys, ak) }); err != nil {
		t.Fatal(err)
	}
	r := runFor(t, alice, 30*time.Second, "list", a.Host())
	if r.Code == 0 {
		t.Fatalf("logged in with keys from a file only root can read: %q", r.Stdout)
	}
	if !strings.Contains(a.Log(), "permission denied") {
		t.Errorf("agent log does not say why:\n%s", a.Log())
	}
}

// TestAttackModuleFIFOAndOracle: a FIFO in a user's module directory does
// not pin an agent thread per `module list`, and the scan (as the user)
// cannot tell what exists behind a directory she cannot read.
func TestAttackModuleFIFOAndOracle(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	secret := rootScratch(t, 0o700)
	os.Mkdir(filepath.Join(secret, "exists"), 0o755)
	mods := filepath.Join(ua.Home, ".config", "tether", "modules")
	err := ua.As(func() error {
		if err := os.MkdirAll(filepath.Join(mods, "m", "bin"), 0o755); err != nil {
			return err
		}
		if err := syscall.Mkfifo(filepath.Join(mods, "m", "module.toml"), 0o644); err != nil {
			return err
		}
		if err := os.Symlink(filepath.Join(secret, "exists"), filepath.Join(mods, "probeyes")); err != nil {
			return err
		}
		return os.Symlink(filepath.Join(secret, "missing"), filepath.Join(mods, "probeno"))
	})
	t.Cleanup(func() { os.RemoveAll(filepath.Join(ua.Home, ".config")) })
	if err != nil {
		t.Fatal(err)
	}
	alice.MustRun("list", a.Host())
	pid := a.PID()
	threads := procStatus(t, pid, "Threads")
	var out string
	for i := 0; i < 10; i++ {
		r := runFor(t, alice, 30*time.Second, "module", "list", "--json", a.Host())
		if !strings.Contains(r.Stdout, "not a regular file") {
			t.Fatalf("module list: exit %d %q %q, want module m reported broken", r.Code, r.Stdout, r.Stderr)
		}
		out = r.Stdout
	}
	if now := procStatus(t, pid, "Threads"); now > threads+5 {
		t.Fatalf("agent threads %d -> %d: module list pinned threads", threads, now)
	}
	yes, no := strings.Contains(out, "probeyes"), strings.Contains(out, "probeno")
	if yes != no {
		t.Fatalf("module scan is an existence oracle: probeyes listed %v, probeno listed %v:\n%s", yes, no, out)
	}
}

// TestAttackSessionNamesNotInArgv: every local user can read argv; the
// session host's settings come on a pipe, so ps shows no session name.
func TestAttackSessionNamesNotInArgv(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	alice.MustRun("new", "--name", "secret-project-x", a.Host())
	b, err := readRegular(filepath.Join(a.State, "s", ua.Name, "secret-project-x", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct{ PID int }
	json.Unmarshal(b, &meta)
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", meta.PID))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	if len(args) != 2 || args[1] != "session-host" || strings.Contains(string(cl), "secret") {
		t.Fatalf("session host argv %q, want only [tether session-host]", args)
	}
}

// TestAttackSockSymlink: a session's sock replaced by a symlink to another
// service's socket gets nothing from the agent: the peer's uid is checked
// before a byte is written.
func TestAttackSockSymlink(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "s1", a.Host()))
	other := filepath.Join(rootScratch(t, 0o755), "svc.sock")
	ln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	received := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(15 * time.Second))
				var buf [4096]byte
				for {
					n, err := c.Read(buf[:])
					mu.Lock()
					received += n
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	sock := filepath.Join(a.State, "s", ua.Name, "s1", "sock")
	err = ua.As(func() error {
		if err := os.Remove(sock); err != nil {
			return err
		}
		return os.Symlink(other, sock)
	})
	if err != nil {
		t.Fatal(err)
	}
	r := runFor(t, alice, 30*time.Second, "invoke", addr, "echo hi")
	if r.Code == 0 {
		t.Fatalf("invoke through a foreign socket succeeded: %q", r.Stdout)
	}
	mu.Lock()
	defer mu.Unlock()
	if received != 0 {
		t.Fatalf("the agent wrote %d bytes to another service's socket", received)
	}
}

// TestGracefulRestartKeepsCommandsAndLimits: SIGTERM (systemctl restart)
// lets go of the sessions; it does not destroy their cgroups, which killed
// every running command at ba048d0.
func TestGracefulRestartKeepsCommandsAndLimits(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "keep", a.Host()))
	pidFile := filepath.Join(ua.Home, "keep.pid")
	os.Remove(pidFile)
	alice.MustRun("invoke", "--disconnected", addr, "sh -c 'echo $$ > "+pidFile+"; exec sleep 300'")
	var pid int
	WaitFor(t, 20*time.Second, "the sleep's pid file", func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !strings.Contains(string(cl), "sleep") {
		WaitFor(t, 10*time.Second, "the command to exec sleep", func() bool {
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			return strings.Contains(string(cl), "sleep")
		})
	}
	cgroups := func() string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		return string(b)
	}
	pidsGroup := func() string {
		for _, l := range strings.Split(cgroups(), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) == 3 && (f[1] == "pids" || f[1] == "") && strings.Contains(f[2], "tether") {
				if f[1] == "" {
					return filepath.Join("/sys/fs/cgroup", f[2])
				}
				return filepath.Join("/sys/fs/cgroup/pids", f[2])
			}
		}
		return ""
	}
	// Commands are born inside their session's group (limits.PrepareStart),
	// so where the agent uses cgroups the group is there from the start.
	group := pidsGroup()
	var before []byte
	switch {
	case group != "":
		before, _ = os.ReadFile(filepath.Join(group, "pids.max"))
	case strings.Contains(a.Log(), "mechanism=cgroup"):
		t.Fatalf("the command is not in its session's cgroup although the agent uses cgroups:\npid %d %s", pid, cgroups())
	default:
		t.Logf("no cgroup for the session (rlimit fallback); checking the command only")
	}
	// A client in the middle of a command holds the agent's stop open for a
	// moment, as in real use; ba048d0 destroyed every cgroup meanwhile.
	busy := strings.TrimSpace(alice.MustRun("new", "--name", "busy", a.Host()))
	other := alice.WithKey()
	other.MustRun("connect", "--force", busy)
	inv := other.Command(context.Background(), "invoke", busy, "echo started; sleep 1")
	outp, _ := inv.StdoutPipe()
	if err := inv.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(outp).ReadString('\n'); line != "started\n" {
		t.Fatalf("busy command: %q", line)
	}
	a.Term()
	inv.Wait()
	a.Restart()
	b := alice.WithKey()
	if l := runFor(t, b, 30*time.Second, "list", a.Host()); !strings.Contains(l.Stdout, "keep") {
		t.Fatalf("session lost: %q %q", l.Stdout, l.Stderr)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the running command died over a graceful restart: %v", err)
	}
	if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(st), ") Z ") {
		t.Fatalf("the running command died over a graceful restart (zombie)")
	}
	if group != "" {
		if now := pidsGroup(); now != group {
			t.Fatalf("the command's cgroup changed over the restart: %q -> %q", group, now)
		}
		after, err := os.ReadFile(filepath.Join(group, "pids.max"))
		if err != nil || string(after) != string(before) {
			t.Fatalf("session limits after the restart: %q %v, before %q", after, err, before)
		}
	}
}
