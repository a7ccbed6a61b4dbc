package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// multiUser starts a root agent serving tt-alice and tt-bob, each with their
// own key, and tt-admin in the admin group.
func multiUser(t *testing.T) (a *Agent, alice, bob, admin *Client, ua, ub OSUser) {
	t.Helper()
	ua = EnsureUser(t, "tt-alice")
	ub = EnsureUser(t, "tt-bob")
	uadm := EnsureUser(t, "tt-admin", "tt-admins")
	alice, bob, admin = NewClient(t), NewClient(t), NewClient(t)
	alice.User, bob.User, admin.User = ua.Name, ub.Name, uadm.Name
	ua.Authorize(t, alice.PubKey())
	ub.Authorize(t, bob.PubKey())
	uadm.Authorize(t, admin.PubKey())
	a = StartAgent(t, AgentOptions{AuthorizedKeys: "%h/.ssh/authorized_keys", Args: []string{"--admin-group", "tt-admins"}})
	return
}

func TestSessionsRunAsTheirUser(t *testing.T) {
	a, alice, _, _, ua, _ := multiUser(t)
	out := alice.MustRun("invoke", a.Host(), "id -un; echo $HOME; echo $USER; pwd")
	want := fmt.Sprintf("%s\n%s\n%s\n%s\n", ua.Name, ua.Home, ua.Name, ua.Home)
	if out != want {
		t.Fatalf("got %q want %q", out, want)
	}
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "mine", a.Host()))
	f := filepath.Join(ua.Home, "made-by-session")
	alice.MustRun("invoke", addr, "touch "+f)
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != ua.UID {
		t.Fatalf("file owned by uid %d, want %d", st.Uid, ua.UID)
	}
	// State on disk: the user's, private.
	dir := filepath.Join(a.State, "s", ua.Name, "mine")
	for _, p := range []string{dir, filepath.Join(dir, "sock"), filepath.Join(dir, "journal"), filepath.Join(dir, "meta.json")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != ua.UID && st.Uid != 0 {
			t.Errorf("%s owned by uid %d", p, st.Uid)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %o, want no group/other access", p, fi.Mode().Perm())
		}
	}
	// Supplementary groups and a clean environment.
	env := alice.MustRun("invoke", addr, "env | cut -d= -f1 | sort | tr '\\n' ' '")
	for _, k := range []string{"HOME", "USER", "LOGNAME", "SHELL", "PATH"} {
		if !strings.Contains(" "+env, " "+k+" ") {
			t.Errorf("session env lacks %s: %s", k, env)
		}
	}
	if strings.Contains(env, "SSH_AUTH_SOCK") || strings.Contains(env, "TETHER_") {
		t.Errorf("agent environment leaked into the session: %s", env)
	}
}

func TestOtherUsersSessionsAreInvisible(t *testing.T) {
	a, alice, bob, admin, _, _ := multiUser(t)
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "secret", a.Host()))
	alice.MustRun("invoke", addr, "v=alice-state")
	never := a.Host() + "/never-existed"

	notFound := func(c *Client, args ...string) string {
		t.Helper()
		r := c.Run(args...)
		if r.Code != 255 {
			t.Fatalf("%v as another user: exit %d, stdout %q", args, r.Code, r.Stdout)
		}
		return r.Stderr
	}
	attempts := [][]string{
		{"invoke", "%s", "echo leaked"},
		{"connect", "%s"},
		{"receive", "%s"},
		{"disconnect", "%s"},
		{"remove", "%s"},
	}
	for _, c := range []*Client{bob, admin} {
		c.MustRun("list", a.Host()) // first contact: the host key notice
		for _, at := range attempts {
			args := func(target string) []string {
				out := make([]string, len(at))
				for i, v := range at {
					out[i] = strings.ReplaceAll(v, "%s", target)
				}
				return out
			}
			got := notFound(c, args(addr)...)
			ref := notFound(c, args(never)...)
			got = strings.ReplaceAll(got, "secret", "NAME")
			ref = strings.ReplaceAll(ref, "never-existed", "NAME")
			if got != ref {
				t.Fatalf("%s %s: %q differs from the error for a name that never existed: %q", c.User, at[0], got, ref)
			}
			if !strings.Contains(got, "no session NAME") {
				t.Fatalf("%s %s: %q", c.User, at[0], got)
			}
		}
		if l := c.MustRun("list", a.Host()); strings.Contains(l, "secret") {
			t.Fatalf("%s sees alice's session:\n%s", c.User, l)
		}
	}
	// alice's session is unaffected.
	if got := alice.MustRun("invoke", addr, "echo $v"); got != "alice-state\n" {
		t.Fatalf("alice's session after the attempts: %q", got)
	}
	// The admin sees it in --all-users and may remove it; bob may not list all.
	if l := admin.MustRun("list", "--all-users", a.Host()); !strings.Contains(l, "secret") {
		t.Fatalf("admin --all-users:\n%s", l)
	}
	if r := bob.Run("list", "--all-users", a.Host()); r.Code != 255 || !strings.Contains(r.Stderr, "admin") {
		t.Fatalf("bob --all-users: %d %q", r.Code, r.Stderr)
	}
	admin.MustRun("remove", "--owner", "tt-alice", addr)
	if r := alice.Run("invoke", addr, "true"); !strings.Contains(r.Stderr, "Closed") {
		t.Fatalf("after the admin removed it: %q", r.Stderr)
	}
}

func TestKeysAndAuthorizedKeysChecks(t *testing.T) {
	a, alice, bob, _, ua, _ := multiUser(t)
	// bob's key cannot log in as alice.
	r := bob.Run("-l", ua.Name, "invoke", a.Host(), "id -un")
	if r.Code != 255 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("bob's key as alice: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// A group-writable authorized_keys is refused, and the log says why.
	p := filepath.Join(ua.Home, ".ssh", "authorized_keys")
	os.Chmod(p, 0o620)
	defer os.Chmod(p, 0o600)
	r = alice.Run("invoke", a.Host(), "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("group-writable authorized_keys: exit %d %q", r.Code, r.Stderr)
	}
	WaitFor(t, 5*time.Second, "a log line about the mode", func() bool {
		return strings.Contains(a.Log(), "group-writable")
	})
	os.Chmod(p, 0o600)
	alice.MustRun("invoke", a.Host(), "true")
}

func TestUserModeAgentServesOnlyItsUser(t *testing.T) {
	ua := EnsureUser(t, "tt-alice")
	EnsureUser(t, "tt-bob")
	c := NewClient(t)
	c.User = ua.Name
	// Authorized keys for alice, and the same key for bob: still refused.
	keys := ShortTempDir(t)
	os.Chown(keys, ua.UID, ua.GID)
	ak := filepath.Join(keys, "authorized_keys")
	b, _ := os.ReadFile(c.PubKey())
	os.WriteFile(ak, b, 0o600)
	os.Chown(ak, ua.UID, ua.GID)
	a := StartAgent(t, AgentOptions{AuthorizedKeys: ak, Credential: ua.Credential(), Env: []string{"HOME=" + ua.Home, "USER=" + ua.Name}})
	if out := c.MustRun("invoke", a.Host(), "id -un"); out != ua.Name+"\n" {
		t.Fatalf("own user: %q", out)
	}
	for _, other := range []string{"tt-bob", "root", "nosuchuser"} {
		r := c.Run("-l", other, "invoke", a.Host(), "id -un")
		if r.Code != 255 || !strings.Contains(r.Stderr, "accepts only "+ua.Name) {
			t.Fatalf("login as %s on %s's agent: exit %d %q", other, ua.Name, r.Code, r.Stderr)
		}
	}
}

func TestUnauthenticatedFloodDoesNotLockOut(t *testing.T) {
	a, c := setup(t)
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", a.Addr)
			if err != nil {
				return
			}
			nc.Write([]byte("SSH-2.0-flood\r\n")) // then say nothing more
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}()
	}
	wg.Wait()
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	if len(conns) < 150 {
		t.Fatalf("only %d flood connections opened", len(conns))
	}
	// The agent registers each accepted connection in its own goroutine: a
	// client whose connection registered before the flood's last ones
	// would be the source's oldest and dropped in their place. Wait until
	// every flood connection beyond the per-source cap (20) has dropped
	// one, so the client's is the newest, as for a user who arrives
	// during a flood rather than with it.
	WaitFor(t, 10*time.Second, "the agent to take in the whole flood", func() bool {
		return strings.Count(a.Log(), "MaxStartupsPerSource") >= len(conns)-20
	})
	for i := 0; i < 3; i++ {
		if out := c.MustRun("invoke", a.Host(), "echo ok"); out != "ok\n" {
			t.Fatalf("during the flood: %q", out)
		}
	}
	if !strings.Contains(a.Log(), "MaxStartups") {
		t.Fatal("no log line about dropping unauthenticated connections")
	}
}
