package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-sh/tether/internal/limits"
	"github.com/tether-sh/tether/internal/sessionhost"
	"github.com/tether-sh/tether/internal/wire"
)

// sessionRef is the agent's view of one session host.
type sessionRef struct {
	user, name string
	dir        string
	meta       sessionhost.Meta
	broken     string // why the session host cannot be reached, if it cannot
	watch      net.Conn
	group      *limits.Group // the session's cgroup, when the agent made one
}

// groupID is what a session's limit group is named from (limits.GroupID:
// uid and a hash of user, session and state directory, so that no two
// users, sessions or agents share one). uid < 0: look the user up.
func (a *Agent) groupID(userName string, uid int, name string) limits.GroupID {
	if uid < 0 {
		if u, err := user.Lookup(userName); err == nil {
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

func (a *Agent) userDir(user string) string { return filepath.Join(a.opts.StateDir, "s", user) }

func (a *Agent) sessionDir(user, name string) string { return filepath.Join(a.userDir(user), name) }

func (a *Agent) tombstonePath(user, name string) string {
	return filepath.Join(a.userDir(user), ".closed", name+".json")
}

func (a *Agent) lookup(user, name string) *sessionRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[user][name]
}

// notFound explains a missing session: closed (with the tombstone's story)
// or never existed. Another user's session looks exactly like the latter.
func (a *Agent) notFound(user, name string) error {
	b, err := os.ReadFile(a.tombstonePath(user, name))
	if err == nil {
		var ts sessionhost.Tombstone
		if json.Unmarshal(b, &ts) == nil {
			return wire.Errorf(wire.CodeClosed, "session %s is Closed: closed by %s at %s (%s)",
				name, ts.ClosedBy, ts.ClosedAt.Format(time.RFC3339), ts.Reason)
		}
	}
	return wire.Errorf(wire.CodeNotFound, "no session %s on %%HOST%% (tether list %%HOST%% shows yours)", name)
}

func (a *Agent) register(ref *sessionRef) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.sessions[ref.user]
	if m == nil {
		m = map[string]*sessionRef{}
		a.sessions[ref.user] = m
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

// spawn starts a session host for u.
func (a *Agent) spawn(u *user.User, name string, temporary bool) (*sessionRef, error) {
	if err := a.admit(u.Username); err != nil {
		return nil, err
	}
	dir := a.sessionDir(u.Username, name)
	if a.lookup(u.Username, name) != nil {
		return nil, wire.Errorf(wire.CodeExists, "a session named %s already exists on this host; pick another --name or remove it first", name)
	}
	if err := a.prepareUserDir(u); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, wire.Errorf(wire.CodeExists, "a session named %s already exists on this host; pick another --name or remove it first", name)
		}
		return nil, fmt.Errorf("session dir: %w", err)
	}
	uid, gid := atoi(u.Uid), atoi(u.Gid)
	if a.root {
		os.Chown(dir, uid, gid)
	}
	os.Remove(a.tombstonePath(u.Username, name))
	lj, _ := json.Marshal(a.limits())
	args := []string{"session-host",
		"--dir", dir,
		"--name", name,
		"--user", u.Username,
		"--tombstone", a.tombstonePath(u.Username, name),
		"--limits", string(lj),
	}
	if temporary {
		args = append(args, "--temporary")
	}
	var group *limits.Group
	if a.cgroups() {
		g, err := limits.Create(a.mech, a.groupID(u.Username, uid, name), uid, gid, a.limitSpec())
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("session limits: %w", err)
		}
		group = g
		args = append(args, "--limits-group", g.Name(), "--limits-mechanism", string(a.mech))
	}
	fail := func() {
		os.RemoveAll(dir)
		if group != nil {
			group.Destroy()
		}
	}
	cmd := exec.Command(a.opts.Executable, args...)
	cmd.Dir = u.HomeDir
	cmd.Env = append(a.sessionEnv(u), sessionhost.RuntimeEnv...) // one P: see sessionhost/idlemem.go
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if a.root && uid != 0 {
		cred, err := credential(u)
		if err != nil {
			fail()
			return nil, err
		}
		cmd.SysProcAttr.Credential = cred
	}
	logf, err := os.OpenFile(filepath.Join(dir, "host.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fail()
		return nil, fmt.Errorf("session log: %w", err)
	}
	if a.root {
		logf.Chown(uid, gid)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	pr, pw, err := os.Pipe()
	if err != nil {
		fail()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		fail()
		return nil, fmt.Errorf("start session host: %w", err)
	}
	pw.Close()
	go cmd.Wait() // reap it if it ends while we run; after a restart init does
	if group != nil {
		if err := group.AddHost(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			fail()
			return nil, fmt.Errorf("session limits: %w", err)
		}
	}
	ready := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(pr, 4096))
		pr.Close()
		ready <- strings.TrimSpace(string(b))
	}()
	select {
	case msg := <-ready:
		if msg != "ready" {
			cmd.Process.Kill()
			fail()
			if msg == "" {
				msg = "it exited; see the agent log"
			}
			return nil, fmt.Errorf("session host for %s did not start: %s", name, strings.TrimPrefix(msg, "error "))
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		fail()
		return nil, fmt.Errorf("session host for %s did not start within 15s", name)
	}
	ref := &sessionRef{user: u.Username, name: name, dir: dir, group: group, meta: sessionhost.Meta{Name: name, User: u.Username, Created: time.Now(), PID: cmd.Process.Pid, Temporary: temporary}}
	if err := a.startWatch(ref); err != nil {
		cmd.Process.Kill()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("session host for %s: %w", name, err)
	}
	a.register(ref)
	a.log.Info("session opened", "user", u.Username, "session", name, "pid", cmd.Process.Pid, "temporary", temporary)
	return ref, nil
}

// prepareUserDir makes StateDir/s/USER, owned by the user in root mode, so
// that their session hosts can write journals and tombstones there.
func (a *Agent) prepareUserDir(u *user.User) error {
	ud := a.userDir(u.Username)
	for _, d := range []string{ud, filepath.Join(ud, ".closed")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("state: %w", err)
		}
		if a.root {
			if err := os.Chown(d, atoi(u.Uid), atoi(u.Gid)); err != nil {
				return fmt.Errorf("state: %w", err)
			}
		}
	}
	return nil
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
	b, err := os.ReadFile("/etc/passwd")
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
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	var groups []uint32
	for _, g := range gids {
		groups = append(groups, uint32(atoi(g)))
	}
	return &syscall.Credential{Uid: uint32(atoi(u.Uid)), Gid: uint32(atoi(u.Gid)), Groups: groups}, nil
}

// startWatch holds a connection to the session host; when it closes, the
// session is gone and is forgotten.
func (a *Agent) startWatch(ref *sessionRef) error {
	nc, c, err := a.dialSession(ref, identity{user: ref.user}, wire.Request{Op: "watch"})
	if err != nil {
		return err
	}
	var resp wire.Response
	if err := c.ReadJSON(wire.TResponse, &resp); err != nil {
		nc.Close()
		return err
	}
	ref.watch = nc
	go func() {
		// The host never writes again; its close is the news. Read the
		// socket itself: the wire.Conn's 64 KiB buffer, kept for every
		// session, would be most of what an idle session costs the agent.
		var b [64]byte
		for {
			if _, err := nc.Read(b[:]); err != nil {
				break
			}
		}
		nc.Close()
		a.unregister(ref)
		if ref.group != nil {
			if err := ref.group.Destroy(); err != nil {
				a.log.Warn("cannot remove session cgroup", "session", ref.name, "err", err)
			}
		}
	}()
	return nil
}

func (a *Agent) closeWatches() {
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
// sends req.
func (a *Agent) dialSession(ref *sessionRef, id identity, req wire.Request) (net.Conn, *wire.Conn, error) {
	nc, err := net.DialTimeout("unix", sessionhost.SocketPath(ref.dir), 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("session host for %s is unreachable: %w", ref.name, err)
	}
	// Small buffer: the agent reads the host's Hello (and a response),
	// then relays with buffers of its own (copyOutput).
	c := wire.NewConnBuffer(nc, 0, 4<<10)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.HandshakeRequest(wire.Hello{Software: "tether-agent", User: ref.user, Admin: id.admin, RemoteAddr: id.remote}, req); err != nil {
		nc.Close()
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	return nc, c, nil
}

// discover finds the session hosts that outlived a previous agent.
func (a *Agent) discover() {
	metas, _ := filepath.Glob(filepath.Join(a.opts.StateDir, "s", "*", "*", "meta.json"))
	found := 0
	for _, mp := range metas {
		dir := filepath.Dir(mp)
		var meta sessionhost.Meta
		b, err := os.ReadFile(mp)
		if err != nil || json.Unmarshal(b, &meta) != nil {
			continue
		}
		ref := &sessionRef{user: filepath.Base(filepath.Dir(dir)), name: filepath.Base(dir), dir: dir, meta: meta}
		if a.cgroups() {
			if g, err := limits.Open(a.mech, a.groupID(ref.user, -1, ref.name)); err == nil {
				ref.group = g
			}
		}
		if err := a.startWatch(ref); err != nil {
			ref.broken = "its session host is gone (" + err.Error() + ")"
			if ref.group != nil {
				ref.group.Destroy()
				ref.group = nil
			}
			a.log.Warn("session broken", "user", ref.user, "session", ref.name, "reason", ref.broken)
		} else {
			found++
			a.pushLimitsTo(ref)
		}
		a.register(ref)
	}
	if len(metas) > 0 {
		a.log.Info("found sessions from before", "alive", found, "total", len(metas))
	}
}
