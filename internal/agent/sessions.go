package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/osuser"
	"github.com/tether-sh/tether/internal/peercred"
	"github.com/tether-sh/tether/internal/safefs"
	"github.com/tether-sh/tether/internal/sessionhost"
	"github.com/tether-sh/tether/internal/wire"
)

// sessionRef is the agent's view of one session host.
type sessionRef struct {
	user, name string
	dir        string
	meta       sessionhost.Meta
	broken     string // why the session host cannot be reached, if it cannot
	uid        int    // who must serve its socket
	watch      net.Conn
	group      *limits.Group // the session's cgroup, when the agent made one
	// ending is set once the host has closed the session and the agent is
	// removing what it left (directory, cgroup); gone is closed when that is
	// done. A session of the same name cannot start before: its directory
	// and cgroup would be removed under it.
	ending bool
	gone   chan struct{}
	// hostsDropped: the session ended, keep no connection to its host
	// (guarded by Agent.hosts.mu; hostpool.go).
	hostsDropped bool
}

// endingWait bounds how long an operation waits for an ended session's
// clean-up (the cgroup's Destroy gives its host 5 s).
const endingWait = 10 * time.Second

// groupID is what a session's limit group is named from (limits.GroupID:
// uid and a hash of user, session and state directory, so that no two
// users, sessions or agents share one). uid < 0: look the user up.
func (a *Agent) groupID(userName string, uid int, name string) limits.GroupID {
	if uid < 0 {
		if u, err := osuser.Lookup(userName); err == nil {
			uid = atoi(u.Uid)
		}
	}
	return limits.GroupID{UID: uid, User: userName, Session: name, StateDir: a.opts.StateDir}
}

// cgroups reports whether the agent itself creates per-session cgroups
// (otherwise each session host enforces rlimits and counts processes).
func (a *Agent) cgroups() bool {
	return a.mech == limits.Cgroup1 || a.mech == limits.Cgroup2
}

func (a *Agent) limitSpec() limits.Spec {
	l := a.limits()
	return limits.Spec{MaxProcesses: l.MaxProcesses, MaxMemoryBytes: l.MaxMemoryBytes}
}

var validName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) }) // compiled on first use, not at start-up

// ValidName reports whether name is usable as a session name.
func ValidName(name string) error {
	if !validName().MatchString(name) {
		return fmt.Errorf("bad session name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// The on-disk layout (docs/SECURITY.md "Root never works in user-owned
// places"): STATE/s and STATE/s/USER are the agent's (root-owned, 0711), so
// a user cannot create, rename or replace entries in them; STATE/s/USER/NAME
// and STATE/s/USER/.closed are the user's (0700), made by the agent with
// mkdirat on the parent's fd and handed over by fchown on their own fd.
// Everything below those two is the session host's, which runs as the user.
// The agent reads a user's file only below a dir fd without following
// symlinks (safefs), and does anything more as the user (safefs.AsUser).

const (
	closedDir = ".closed"
	// maxUserJSON bounds the agent's read of a user's meta.json or tombstone.
	maxUserJSON = 64 << 10
	// userFileTimeout bounds one file operation done as a user.
	userFileTimeout = 5 * time.Second
	// discoveryDeadline bounds start-up discovery; operations that arrive
	// before it finishes wait for it at most this long.
	discoveryDeadline = 20 * time.Second
	discoveryWorkers  = 8
)

func (a *Agent) userDir(user string) string { return filepath.Join(a.opts.StateDir, "s", user) }

func (a *Agent) sessionDir(user, name string) string { return filepath.Join(a.userDir(user), name) }

func (a *Agent) tombstonePath(user, name string) string {
	return filepath.Join(a.userDir(user), closedDir, name+".json")
}

func (a *Agent) lookup(user, name string) *sessionRef {
	a.awaitDiscovery()
	a.rescanMissing(user, name) // stdio agents: sessions another one started (stdiorescan.go)
	a.mu.Lock()
	ref := a.sessions[user][name]
	if ref == nil || !ref.ending {
		a.mu.Unlock()
		return ref
	}
	a.mu.Unlock()
	// Closed, being cleaned up: answer once it is gone, so that the name
	// is free (not Busy, not "exists") when the caller acts on it.
	a.awaitGone(ref)
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.sessions[user][name]; r != nil && !r.ending {
		return r
	}
	return nil
}

// awaitGone waits, at most endingWait, for an ended session's clean-up.
func (a *Agent) awaitGone(ref *sessionRef) {
	t := time.NewTimer(endingWait)
	defer t.Stop()
	select {
	case <-ref.gone:
	case <-t.C:
		a.log.Warn("session clean-up is slow", "user", ref.user, "session", ref.name)
	}
}

// awaitDiscovery holds an operation until start-up discovery has finished
// (or given up at its deadline), so that a session from before a restart
// is not reported missing.
func (a *Agent) awaitDiscovery() {
	select {
	case <-a.discovered:
		return
	default:
	}
	t := time.NewTimer(discoveryDeadline)
	defer t.Stop()
	select {
	case <-a.discovered:
	case <-t.C:
	}
}

// userCred is whose file-system rights the agent uses for u's files.
func userCred(u *user.User) (safefs.Cred, error) {
	c := safefs.Cred{UID: atoi(u.Uid), GID: atoi(u.Gid)}
	gids, err := osuser.GroupIds(u)
	if err != nil {
		return c, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	for _, g := range gids {
		c.Groups = append(c.Groups, atoi(g))
	}
	return c, nil
}

// asUser runs fn with the file-system rights of the named user (in user
// mode the agent's own), within userFileTimeout.
func (a *Agent) asUser(name string, fn func() error) error {
	u, err := lookupUser(name)
	if err != nil {
		return err
	}
	c, err := userCred(u)
	if err != nil {
		return err
	}
	if !a.root {
		c = safefs.Cred{UID: os.Geteuid(), GID: os.Getegid()}
	}
	return safefs.AsUser(c, userFileTimeout, fn)
}

// fileOwner is the uid that owns a user's session files: the user's in
// root mode, the agent's own otherwise.
func (a *Agent) fileOwner(name string) (int, bool) {
	if !a.root {
		return os.Geteuid(), true
	}
	u, err := lookupUser(name)
	if err != nil {
		return -1, false
	}
	return atoi(u.Uid), true
}

// notFound explains a missing session: closed (with the tombstone's story)
// or never existed. Another user's session looks exactly like the latter.
// The tombstone is the user's file: read below STATE/s's fd, no symlinks,
// a regular file of theirs, at most maxUserJSON bytes; anything else is
// "never existed".
func (a *Agent) notFound(user, name string) error {
	nf := wire.Errorf(wire.CodeNotFound, "no session %s on %%HOST%% (tether list %%HOST%% shows yours)", name)
	ts, ok := a.tombstone(user, name)
	if !ok {
		return nf
	}
	return closedErr(name, ts)
}

func closedErr(name string, ts sessionhost.Tombstone) error {
	return wire.Errorf(wire.CodeClosed, "session %s is Closed: closed by %s at %s (%s)",
		name, ts.ClosedBy, ts.ClosedAt.Format(time.RFC3339), ts.Reason)
}

// tombstone reads the tombstone of user's session name (see notFound).
func (a *Agent) tombstone(user, name string) (sessionhost.Tombstone, bool) {
	var ts sessionhost.Tombstone
	if ValidName(name) != nil || ValidName(user) != nil {
		return ts, false
	}
	uid, ok := a.fileOwner(user)
	if !ok {
		return ts, false
	}
	b, err := safefs.ReadBeneath(a.sdir, user+"/"+closedDir+"/"+name+".json", maxUserJSON, uid)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("tombstone refused", "user", user, "session", name, "err", err)
		}
		return ts, false
	}
	if json.Unmarshal(b, &ts) != nil {
		return ts, false
	}
	return ts, true
}

// closedMeanwhile tells why a session whose host could not be reached has
// closed, if it closed: a host that is closing (a limit ran out) may take
// a connection and end before it answers. It waits at most closingWait for
// the host's tombstone of this session (not an older one of the name).
func (a *Agent) closedMeanwhile(ref *sessionRef) error {
	deadline := time.Now().Add(closingWait)
	for {
		if ts, ok := a.tombstone(ref.user, ref.name); ok && !ts.ClosedAt.Before(ref.meta.Created) {
			return closedErr(ref.name, ts)
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ref.gone:
			deadline = time.Now() // one more look, then give up
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// closingWait bounds closedMeanwhile's wait for a closing host's tombstone.
const closingWait = 2 * time.Second

func (a *Agent) register(ref *sessionRef) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.sessions[ref.user]
	if m == nil {
		m = map[string]*sessionRef{}
		a.sessions[ref.user] = m
	}
	if ref.gone == nil {
		ref.gone = make(chan struct{})
	}
	m[ref.name] = ref
}

func (a *Agent) unregister(ref *sessionRef) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m := a.sessions[ref.user]; m[ref.name] == ref {
		delete(m, ref.name)
		if len(m) == 0 {
			delete(a.sessions, ref.user)
		}
	}
}

func errExists(name string) error {
	return wire.Errorf(wire.CodeExists, "a session named %s already exists on this host; pick another --name or remove it first", name)
}

// spawn starts a session host for u: prepare its directory, make its limit
// group, start the host with its launch message, await its ready line.
func (a *Agent) spawn(u *user.User, name string, temporary bool, sh shellChoice) (*sessionRef, error) {
	// A stdio agent knows only the sessions it looked at: the limits
	// count, and the name check sees, all of them.
	a.rescanMissing(u.Username, "")
	release, err := a.admit(u.Username)
	if err != nil {
		return nil, err
	}
	defer release()
	if a.lookup(u.Username, name) != nil {
		return nil, errExists(name)
	}
	cred, err := userCred(u)
	if err != nil {
		return nil, err
	}
	ud, err := a.prepareSession(u, cred, name)
	if err != nil {
		return nil, err
	}
	defer ud.Close()
	dir := a.sessionDir(u.Username, name)
	var group *limits.Group
	fail := func() {
		a.removeSessionDir(ud, u.Username, name)
		if group != nil {
			group.Destroy()
		}
	}
	if a.cgroups() {
		if group, err = a.newGroup(u, cred, name); err != nil {
			fail()
			return nil, fmt.Errorf("session limits: %w", err)
		}
	}
	l := sessionhost.Launch{Dir: dir, Name: name, User: u.Username, Tombstone: a.tombstonePath(u.Username, name),
		Temporary: temporary, Limits: a.limits(), Shell: sh.kind, NoProfile: sh.noProfile}
	if group != nil {
		l.LimitsGroup, l.LimitsMechanism = group.Name(), string(a.mech)
	}
	cmd, ready, err := a.startHost(u, l)
	if err != nil {
		fail()
		return nil, err
	}
	if group != nil {
		if err := group.AddHost(cmd.Process.Pid); err != nil {
			ready.Close()
			cmd.Process.Kill()
			fail()
			return nil, fmt.Errorf("session limits: %w", err)
		}
	}
	if err := awaitReady(ready, name); err != nil {
		cmd.Process.Kill()
		fail()
		return nil, err
	}
	ref := &sessionRef{user: u.Username, uid: atoi(u.Uid), name: name, dir: dir, group: group,
		meta: sessionhost.Meta{Name: name, User: u.Username, Created: time.Now(), PID: cmd.Process.Pid, Temporary: temporary}}
	if !a.root {
		ref.uid = os.Geteuid()
	}
	if err := a.startWatch(ref); err != nil {
		cmd.Process.Kill()
		fail()
		return nil, fmt.Errorf("session host for %s: %w", name, err)
	}
	a.register(ref)
	a.log.Info("session opened", "user", u.Username, "session", name, "pid", cmd.Process.Pid, "temporary", temporary)
	return ref, nil
}

// newGroup makes the session's cgroup: the one place the agent creates one.
func (a *Agent) newGroup(u *user.User, cred safefs.Cred, name string) (*limits.Group, error) {
	return limits.Create(a.mech, a.groupID(u.Username, cred.UID, name), cred.UID, cred.GID, a.limitSpec())
}

// openGroup finds the cgroup of a session from before a restart.
func (a *Agent) openGroup(user string, uid int, name string) (*limits.Group, error) {
	return limits.Open(a.mech, a.groupID(user, uid, name))
}

// prepareSession makes the user's directory and the empty session
// directory NAME in it, owned by the user. It returns the user's directory.
func (a *Agent) prepareSession(u *user.User, cred safefs.Cred, name string) (*os.File, error) {
	ud, err := a.prepareUserDir(u.Username, cred)
	if err != nil {
		return nil, err
	}
	if !a.root {
		cred = safefs.Cred{UID: os.Geteuid(), GID: os.Getegid()}
	}
	sd, _, err := safefs.MkdirOwned(ud, name, 0o700, cred.UID, cred.GID, true)
	if err != nil {
		ud.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, errExists(name)
		}
		return nil, fmt.Errorf("session dir: %w", err)
	}
	sd.Close()
	return ud, nil
}

// prepareUserDir opens STATE/s/USER, made or migrated to the agent's own
// (0711), and makes sure its .closed is a real directory of the user's.
// Anything else found in those places (a symlink, a file) is moved aside.
func (a *Agent) prepareUserDir(user string, cred safefs.Cred) (*os.File, error) {
	if !a.root {
		cred = safefs.Cred{UID: os.Geteuid(), GID: os.Getegid()}
	}
	ud, err := a.ownedDir(a.sdir, user, 0o711, os.Geteuid(), os.Getegid(), ".bad-"+user)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	cd, err := a.ownedDir(ud, closedDir, 0o700, cred.UID, cred.GID, closedDir+".bad")
	if err != nil {
		ud.Close()
		return nil, fmt.Errorf("state: %w", err)
	}
	cd.Close()
	return ud, nil
}

// ownedDir is safefs.MkdirOwned that moves a non-directory in the way
// aside (to aside.TIME within parent, which must be the agent's own) and
// logs it.
func (a *Agent) ownedDir(parent *os.File, name string, perm os.FileMode, uid, gid int, aside string) (*os.File, error) {
	d, _, err := safefs.MkdirOwned(parent, name, perm, uid, gid, false)
	if !safefs.IsNotDir(err) {
		return d, err
	}
	to := fmt.Sprintf("%s.%d", aside, time.Now().UnixNano())
	if rerr := safefs.Rename(parent, name, to); rerr != nil {
		return nil, fmt.Errorf("%w; moving it aside: %v", err, rerr)
	}
	a.log.Warn("state: moved aside an entry that is not a directory", "dir", parent.Name(), "entry", name, "now", to)
	d, _, err = safefs.MkdirOwned(parent, name, perm, uid, gid, false)
	return d, err
}

// removeSessionDir removes the session directory NAME in the user's
// directory ud: its contents as the user (never following a symlink), the
// then empty directory from ud's fd.
func (a *Agent) removeSessionDir(ud *os.File, user, name string) error {
	err := a.asUser(user, func() error { return safefs.RemoveContents(ud, name) })
	if err != nil {
		a.log.Warn("cannot empty session dir", "user", user, "session", name, "err", err)
	}
	if err := safefs.Rmdir(ud, name); err != nil {
		a.log.Warn("cannot remove session dir", "user", user, "session", name, "err", err)
		return err
	}
	return nil
}

// removeBroken removes what a broken session left on disk.
func (a *Agent) removeBroken(ref *sessionRef) error {
	ud, err := safefs.OpenBeneath(a.sdir, ref.user, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer ud.Close()
	return a.removeSessionDir(ud, ref.user, ref.name)
}

// ended is the end of a session, as its watch connection told: forget it,
// remove its (by now emptied) directory and its cgroup.
func (a *Agent) ended(ref *sessionRef) {
	a.mu.Lock()
	ref.ending = true
	if ref.gone == nil { // ended before it was registered
		ref.gone = make(chan struct{})
	}
	a.mu.Unlock()
	a.hosts.drop(ref)
	defer func() {
		a.unregister(ref)
		close(ref.gone)
	}()
	if ud, err := safefs.OpenBeneath(a.sdir, ref.user, unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
		// Only when empty: a host that died without closing left its
		// session to be found Broken by the next discovery.
		if err := unix.Unlinkat(int(ud.Fd()), ref.name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) {
			a.log.Warn("cannot remove session dir", "user", ref.user, "session", ref.name, "err", err)
		}
		ud.Close()
	}
	if ref.group != nil {
		if err := ref.group.Destroy(); err != nil {
			a.log.Warn("cannot remove session cgroup", "session", ref.name, "err", err)
		}
	}
}

// startHost starts the session host process with its launch message on
// an inherited pipe (fd 3) and the ready pipe (fd 4), whose read end it
// returns. Its stdout and stderr are /dev/null until it opens its own
// host.log: the agent never opens a file in the user's session directory.
func (a *Agent) startHost(u *user.User, l sessionhost.Launch) (*exec.Cmd, *os.File, error) {
	msg, err := l.Encode()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(a.opts.Executable, "session-host")
	cmd.Dir = u.HomeDir
	cmd.Env = append(a.sessionEnv(u), sessionhost.RuntimeEnv...) // one P: see sessionhost/idlemem.go
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	a.wrapHost(cmd) // a stdio agent's: outlive logout (stdiologout.go)
	if a.root && u.Uid != "0" {
		cred, err := credential(u)
		if err != nil {
			return nil, nil, err
		}
		cmd.SysProcAttr.Credential = cred
	}
	lr, lw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer lr.Close()
	// The message is at most 64 KiB, what a pipe holds: written before the
	// start, it never blocks.
	_, err = lw.Write(msg)
	lw.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("session host launch: %w", err)
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer rw.Close()
	cmd.ExtraFiles = []*os.File{lr, rw} // sessionhost.LaunchFD, sessionhost.ReadyFD
	if err := cmd.Start(); err != nil {
		rr.Close()
		return nil, nil, fmt.Errorf("start session host: %w", err)
	}
	go cmd.Wait() // reap it if it ends while we run; after a restart init does
	return cmd, rr, nil
}

// awaitReady reads the session host's ready line.
func awaitReady(pr *os.File, name string) error {
	ready := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(pr, 4096))
		ready <- strings.TrimSpace(string(b))
	}()
	defer pr.Close()
	select {
	case msg := <-ready:
		if msg == "ready" {
			return nil
		}
		if msg == "" {
			msg = "it exited; see the agent log"
		}
		return fmt.Errorf("session host for %s did not start: %s", name, strings.TrimPrefix(msg, "error "))
	case <-time.After(15 * time.Second):
		return fmt.Errorf("session host for %s did not start within 15s", name)
	}
}

// sessionEnv is a clean environment like sshd gives a login.
func (a *Agent) sessionEnv(u *user.User) []string {
	path := "/usr/local/bin:/usr/bin:/bin"
	if u.Uid == "0" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if !a.root {
		if p := os.Getenv("PATH"); p != "" {
			path = p
		}
	}
	env := []string{
		"HOME=" + u.HomeDir,
		"USER=" + u.Username,
		"LOGNAME=" + u.Username,
		"SHELL=" + loginShell(u.Username),
		"PATH=" + path,
	}
	for _, k := range []string{"LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func loginShell(name string) string {
	b, err := os.ReadFile("/etc/passwd") // rootpath: /etc/passwd is root's
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 7 && f[0] == name && f[6] != "" {
				return f[6]
			}
		}
	}
	return "/bin/sh"
}

func credential(u *user.User) (*syscall.Credential, error) {
	gids, err := osuser.GroupIds(u)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	var groups []uint32
	for _, g := range gids {
		groups = append(groups, uint32(atoi(g)))
	}
	return &syscall.Credential{Uid: uint32(atoi(u.Uid)), Gid: uint32(atoi(u.Gid)), Groups: groups}, nil
}

// startWatch holds a connection to the session host; when the host closes
// it, the session has ended. When the agent closes it (stopping), the
// session goes on and nothing is removed.
func (a *Agent) startWatch(ref *sessionRef) error {
	nc, c, err := a.dialSession(ref, identity{user: ref.user}, wire.Request{Op: wire.OpWatch})
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var resp wire.Response
	if err := c.ReadJSON(wire.TResponse, &resp); err != nil {
		nc.Close()
		return err
	}
	nc.SetDeadline(time.Time{})
	a.mu.Lock()
	ref.watch = nc
	a.mu.Unlock()
	go func() {
		// The host never writes again; its close is the news. Read the
		// socket itself: the wire.Conn's 64 KiB buffer, kept for every
		// session, would be most of what an idle session costs the agent.
		var b [64]byte
		var err error
		for {
			if _, err = nc.Read(b[:]); err != nil {
				break
			}
		}
		nc.Close()
		if errors.Is(err, net.ErrClosed) || a.stopping.Load() {
			return // the agent let go of it: the session has not ended
		}
		a.ended(ref)
	}()
	return nil
}

// closeWatches lets go of every session as the agent stops: the sessions,
// their commands and their cgroups stay, for the next agent to find.
func (a *Agent) closeWatches() {
	a.stopping.Store(true)
	a.hosts.close()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.sessions {
		for _, ref := range m {
			if ref.watch != nil {
				ref.watch.Close()
			}
		}
	}
}

// dialSession connects to a session host as the agent on behalf of id and
// sends req. The peer must be the session's user (SO_PEERCRED), checked
// before a byte is written: the socket is in the user's directory, and a
// sock symlinked to another service's socket must get nothing.
func (a *Agent) dialSession(ref *sessionRef, id identity, req wire.Request) (net.Conn, *wire.Conn, error) {
	nc, err := net.DialTimeout("unix", sessionhost.SocketPath(ref.dir), 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("session host for %s is unreachable: %w", ref.name, err)
	}
	if err := checkPeerUID(nc, ref.uid); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("session host for %s: %w", ref.name, err)
	}
	// Small buffer: the agent reads the host's Hello (and a response),
	// then relays with buffers of its own (copyOutput).
	c := wire.NewConnBuffer(nc, 0, 4<<10)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.HandshakeRequest(wire.Hello{Proto: wire.HostVersion, Software: "tether-agent", User: ref.user, Admin: id.admin, RemoteAddr: id.remote}, req); err != nil {
		nc.Close()
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	return nc, c, nil
}

// ErrWrongPeer is a session socket served by a process of another user.
var ErrWrongPeer = errors.New("socket is not served by the session's user")

// checkPeerUID checks the uid of the process at the other end of a unix
// socket connection.
func checkPeerUID(nc net.Conn, uid int) error {
	got, err := peercred.UID(nc)
	if errors.Is(err, peercred.ErrNotUnix) {
		return fmt.Errorf("%w: not a unix socket", ErrWrongPeer)
	}
	if err != nil {
		return err
	}
	if got != uid {
		return fmt.Errorf("%w: peer uid %d, want %d", ErrWrongPeer, got, uid)
	}
	return nil
}

// discover finds the session hosts that outlived a previous agent. It runs
// in the background: it never holds up serving, gives up waiting at
// discoveryDeadline (operations wait for it at most that long), and a bad
// or stuck entry is skipped and logged without stopping the others.
func (a *Agent) discover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, discoveryDeadline)
	defer cancel()
	type entry struct {
		user, name string
		uid        int
		ud         *os.File
	}
	work := make(chan entry)
	var found, total atomic.Int64
	var wg sync.WaitGroup
	for range discoveryWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				total.Add(1)
				if a.discoverOne(e.ud, e.user, e.name, e.uid) {
					found.Add(1)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		var dirs []*os.File
		defer func() {
			close(work)
			wg.Wait()
			for _, d := range dirs {
				d.Close()
			}
			close(done)
		}()
		for _, user := range readNames(a.sdir) {
			if strings.HasPrefix(user, ".") {
				continue
			}
			ud, uid, err := a.discoverUser(user)
			if err != nil {
				a.log.Warn("discovery: skipping user directory", "user", user, "err", err)
				continue
			}
			dirs = append(dirs, ud)
			for _, name := range readNames(ud) {
				if name == closedDir || strings.HasPrefix(name, closedDir+".bad") {
					continue
				}
				if err := ValidName(name); err != nil {
					a.log.Warn("discovery: skipping entry", "user", user, "entry", name, "err", err)
					continue
				}
				select {
				case work <- entry{user: user, name: name, uid: uid, ud: ud}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		a.log.Warn("discovery did not finish in time; serving anyway, entries still being checked are registered when they answer", "deadline", discoveryDeadline)
	}
	close(a.discovered)
	if n := total.Load(); n > 0 {
		a.log.Info("found sessions from before", "alive", found.Load(), "total", n)
	}
}

// discoverUser opens (and migrates, see prepareUserDir) a user's directory.
func (a *Agent) discoverUser(user string) (*os.File, int, error) {
	u, err := lookupUser(user)
	if err != nil {
		return nil, 0, fmt.Errorf("no such user: %w", err)
	}
	cred, err := userCred(u)
	if err != nil {
		return nil, 0, err
	}
	ud, err := a.prepareUserDir(user, cred)
	if err != nil {
		return nil, 0, err
	}
	uid := cred.UID
	if !a.root {
		uid = os.Geteuid()
	}
	return ud, uid, nil
}

// discoverOne looks at one session directory and registers what it finds;
// it reports whether the session host is alive.
func (a *Agent) discoverOne(ud *os.File, user, name string, uid int) bool {
	b, err := safefs.ReadBeneath(ud, name+"/meta.json", maxUserJSON, uid)
	if err != nil {
		a.log.Warn("discovery: skipping session entry", "user", user, "session", name, "err", err)
		return false
	}
	var meta sessionhost.Meta
	if err := json.Unmarshal(b, &meta); err != nil {
		a.log.Warn("discovery: skipping session entry", "user", user, "session", name, "err", fmt.Errorf("meta.json: %w", err))
		return false
	}
	ref := &sessionRef{user: user, uid: uid, name: name, dir: a.sessionDir(user, name), meta: meta}
	if a.cgroups() {
		if g, err := a.openGroup(user, uid, name); err == nil {
			ref.group = g
		}
	}
	alive := true
	if err := a.startWatch(ref); err != nil {
		alive = false
		ref.broken = "its session host is gone (" + err.Error() + ")"
		// Its cgroup goes only when the host is surely gone (nothing
		// listens); a host that is slow or hides behind a bad socket
		// may still have commands running under those limits.
		if ref.group != nil && hostGone(err) {
			ref.group.Destroy()
			ref.group = nil
		}
		a.log.Warn("session broken", "user", ref.user, "session", ref.name, "reason", ref.broken)
	} else {
		a.pushLimitsTo(ref)
	}
	a.register(ref)
	return alive
}

func hostGone(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// readNames lists a directory the agent owns, from its fd.
func readNames(d *os.File) []string {
	dup, err := unix.Dup(int(d.Fd()))
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(dup), d.Name())
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	names, _ := f.Readdirnames(-1)
	sort.Strings(names)
	return names
}
