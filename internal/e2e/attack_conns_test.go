package e2e

// Attacks on the protocol and the agent's connections (issue 11): each test
// failed against ba048d0.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/tether-sh/tether/internal/wire"
)

// rawDial is an SSH connection of c's key, made by the test itself, from
// local (a loopback address, "" for any).
func rawDial(t *testing.T, addr string, c *Client, local string) (*ssh.Client, error) {
	t.Helper()
	key, err := os.ReadFile(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{User: c.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// rawCall sends one request on a new channel and returns the response.
func rawCall(t *testing.T, cl *ssh.Client, req wire.Request) wire.Response {
	t.Helper()
	ch, reqs, err := cl.OpenChannel("tether@tether.sh", nil)
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	wc := wire.NewConn(ch, 0)
	if _, err := wc.HandshakeRequest(wire.Hello{Software: "attack"}, req); err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		t.Fatalf("%s: %v", req.Op, err)
	}
	return resp
}

// TestAttackHelperSocketClient is not a test: TestAttackUserLiftsLimits
// runs the test binary as tt-alice to be her on her own session host's
// socket. It sends the request in TETHER_ATTACK_REQ with a Hello claiming
// admin and another address, and prints the response.
func TestAttackHelperSocketClient(t *testing.T) {
	sock := os.Getenv("TETHER_ATTACK_SOCK")
	if sock == "" {
		t.Skip("helper process only")
	}
	var req wire.Request
	if err := json.Unmarshal([]byte(os.Getenv("TETHER_ATTACK_REQ")), &req); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	wc := wire.NewConn(nc, 0)
	if _, err := wc.HandshakeRequest(wire.Hello{Proto: wire.HostVersion, Software: "tether-agent", User: os.Getenv("TETHER_ATTACK_USER"), Admin: true, RemoteAddr: "10.9.9.9:1"}, req); err != nil {
		fmt.Printf("RESULT handshake: %v\n", err)
		return
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		fmt.Printf("RESULT read: %v\n", err)
		return
	}
	b, _ := json.Marshal(resp)
	fmt.Printf("RESULT %s\n", b)
}

// asUser runs the helper as u against sock and returns its RESULT line.
func asUser(t *testing.T, u OSUser, sock string, req wire.Request) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := ShortTempDir(t)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "attack.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(req)
	cmd := exec.Command(bin, "-test.run=^TestAttackHelperSocketClient$", "-test.v")
	cmd.Dir = dir
	cmd.Env = []string{"TETHER_ATTACK_SOCK=" + sock, "TETHER_ATTACK_REQ=" + string(rb), "TETHER_ATTACK_USER=" + u.Name, "HOME=" + u.Home}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	out, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if r, ok := strings.CutPrefix(line, "RESULT "); ok {
			return r
		}
	}
	t.Fatalf("helper as %s said nothing useful:\n%s", u.Name, out)
	return ""
}

// TestAttackUserLiftsLimitsOnOwnSocket: alice, on her own session host's
// socket (same uid as her session host), sends the agent-only `limits` op
// to lift the policy's IdleTimeout, and a `watch`. Both are refused, and
// the policy's limit still closes the idle session.
func TestAttackUserLiftsLimitsOnOwnSocket(t *testing.T) {
	ua := EnsureUser(t, "tt-alice")
	alice := NewClient(t)
	alice.User = ua.Name
	ua.Authorize(t, alice.PubKey())
	base := ShortTempDir(t)
	if err := os.WriteFile(filepath.Join(base, "policy.toml"), []byte("IdleTimeout = \"4s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := StartAgent(t, AgentOptions{State: filepath.Join(base, "st"), AuthorizedKeys: "%h/.ssh/authorized_keys"})
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "held", a.Host()))
	sock := filepath.Join(a.State, "s", ua.Name, "held", "sock")

	lift := wire.Limits{JournalBytes: 1 << 40, BufferingMode: "block"} // IdleTimeout 0: unlimited
	for _, req := range []wire.Request{{Op: "limits", Limits: &lift}, {Op: "watch"}, {Op: "status"}} {
		got := asUser(t, ua, sock, req)
		var resp wire.Response
		if err := json.Unmarshal([]byte(got), &resp); err != nil || resp.OK || resp.Error == nil || resp.Error.Code != wire.CodeDenied {
			t.Fatalf("%s from tt-alice on her own socket answered %s; want denied", req.Op, got)
		}
	}
	// The limit still holds: the session closes after 4 s idle.
	WaitFor(t, 30*time.Second, "the policy's IdleTimeout to close the session", func() bool {
		_, err := os.Stat(filepath.Join(a.State, "s", ua.Name, ".closed", "held.json"))
		return err == nil
	})
	if r := alice.Run("invoke", addr, "true"); r.Code != 255 || !strings.Contains(r.Stderr, "IdleTimeout") {
		t.Fatalf("after the idle timeout: %d %q", r.Code, r.Stderr)
	}
}

// TestAttackNamesAsPaths: bob names alice's tombstone and session files by
// path. Every op answers bad_request; nothing says closed, or who closed.
func TestAttackNamesAsPaths(t *testing.T) {
	a, alice, bob, admin, ua, _ := multiUser(t)
	alice.MustRun("remove", strings.TrimSpace(alice.MustRun("new", "--name", "gone", a.Host())))
	alice.MustRun("new", "--name", "alive", a.Host())
	bob.MustRun("new", "--name", "mine", a.Host()) // bob's .closed exists, so ../ resolves
	if _, err := os.Stat(filepath.Join(a.State, "s", ua.Name, ".closed", "gone.json")); err != nil {
		t.Fatalf("alice's tombstone: %v", err)
	}
	for _, who := range []*Client{bob, admin} {
		cl, err := rawDial(t, a.Addr, who, "")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		other := "../../" + ua.Name
		for _, name := range []string{other + "/.closed/gone", other + "/alive/meta", other + "/alive", "../" + ua.Name} {
			for _, op := range []wire.Op{wire.OpRun, wire.OpAttach, wire.OpReceive, wire.OpConnect, wire.OpDisconnect, wire.OpStatus, wire.OpRemove, wire.OpNew} {
				resp := rawCall(t, cl, wire.Request{Op: op, Session: name, Command: "id"})
				if resp.Error == nil || resp.Error.Code != wire.CodeBadRequest || !strings.Contains(resp.Error.Message, "letters, digits") {
					t.Errorf("%s %s %q: %+v, want bad_request saying what is allowed", who.User, op, name, resp.Error)
				}
			}
		}
		resp := rawCall(t, cl, wire.Request{Op: "remove", Session: "alive", Owner: "../s/" + ua.Name})
		if resp.Error == nil || resp.Error.Code != wire.CodeBadRequest {
			t.Errorf("%s remove --owner path: %+v", who.User, resp.Error)
		}
	}
}

// TestAttackListAllUsersHidesCommands: an admin's list --all-users shows
// that alice's session exists and runs, not what it runs.
func TestAttackListAllUsersHidesCommands(t *testing.T) {
	a, alice, _, admin, _, _ := multiUser(t)
	addr := strings.TrimSpace(alice.MustRun("new", "--name", "work", a.Host()))
	alice.MustRun("invoke", "--disconnected", addr, "sleep 60 # secret-token-1234")
	WaitFor(t, 10*time.Second, "alice to see her command", func() bool {
		return strings.Contains(alice.MustRun("list", a.Host()), "secret-token-1234")
	})
	for _, args := range [][]string{{"list", "--all-users", a.Host()}, {"list", "--all-users", "--json", a.Host()}} {
		out := admin.Run(args...)
		if !strings.Contains(out.Stdout, "work") {
			t.Fatalf("%v does not show alice's session: %q %q", args, out.Stdout, out.Stderr)
		}
		if strings.Contains(out.Stdout, "secret-token") || strings.Contains(out.Stdout, "sleep 60") {
			t.Fatalf("%v shows alice's command text:\n%s", args, out.Stdout)
		}
	}
}

// TestAttackConcurrentNewRespectsMaxShellsPerUser: 20 concurrent `new`
// with MaxShellsPerUser=3 open exactly 3 (ba048d0 opened 14).
func TestAttackConcurrentNewRespectsMaxShellsPerUser(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxShellsPerUser", "3")
	var ok, limited atomic.Int32
	var other sync.Map
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Run("new", a.Host())
			switch {
			case r.Code == 0:
				ok.Add(1)
			case strings.Contains(r.Stderr, "MaxShellsPerUser (3)"):
				limited.Add(1)
			default:
				other.Store(i, r.Stderr)
			}
		}()
	}
	wg.Wait()
	other.Range(func(k, v any) bool { t.Errorf("new %v failed otherwise: %v", k, v); return true })
	if ok.Load() != 3 || limited.Load() != 17 {
		t.Fatalf("%d sessions opened, %d refused by MaxShellsPerUser; want 3 and 17", ok.Load(), limited.Load())
	}
	if n := strings.Count(c.MustRun("list", a.Host()), "\n"); n > 4 { // header + 3
		t.Fatalf("list shows more than 3 sessions:\n%s", c.MustRun("list", a.Host()))
	}
}

// TestAttackConnectionsPerUser: alice holding MaxConnectionsPerUser
// connections gets a refusal for the next, which the agent then closes; bob
// still gets in.
func TestAttackConnectionsPerUser(t *testing.T) {
	a, alice, bob, admin, _, _ := multiUser(t)
	admin.MustRun("config", "set", a.Host(), "MaxConnectionsPerUser", "3")
	if l := admin.MustRun("config", "list", a.Host()); !strings.Contains(l, "MaxConnectionsPerUser") || !strings.Contains(l, "MaxSessionsPerConnection") {
		t.Fatalf("config list does not show the new settings:\n%s", l)
	}
	for i := 0; i < 3; i++ {
		cl, err := rawDial(t, a.Addr, alice, "")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
	}
	over, err := rawDial(t, a.Addr, alice, "")
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_, _, err = over.OpenChannel("tether@tether.sh", nil)
	if err == nil || !strings.Contains(err.Error(), "MaxConnectionsPerUser (3") {
		t.Fatalf("channel on alice's 4th connection: %v, want the MaxConnectionsPerUser refusal", err)
	}
	closed := make(chan struct{})
	go func() { over.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("the agent kept the over-limit connection open")
	}
	if r := alice.Run("invoke", a.Host(), "true"); r.Code != 255 || !strings.Contains(r.Stderr, "MaxConnectionsPerUser") {
		t.Fatalf("alice's tether over the limit: %d %q, want the refusal shown", r.Code, r.Stderr)
	}
	if out := bob.MustRun("invoke", a.Host(), "echo in"); out != "in\n" {
		t.Fatalf("bob: %q", out)
	}
}

// TestAttackIdleChannels: one connection may hold MaxSessionsPerConnection
// channels; one more is refused, and channels that never send their
// request are closed after the first-request timeout.
func TestAttackIdleChannels(t *testing.T) {
	a, c := setup(t)
	cl, err := rawDial(t, a.Addr, c, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if v := string(cl.ServerVersion()); !strings.Contains(v, "max-sessions=10") {
		t.Fatalf("server version %q does not advertise max-sessions=10", v)
	}
	var chans []ssh.Channel
	for i := 0; i < 10; i++ {
		ch, reqs, err := cl.OpenChannel("tether@tether.sh", nil)
		if err != nil {
			t.Fatalf("channel %d: %v", i, err)
		}
		go ssh.DiscardRequests(reqs)
		chans = append(chans, ch)
	}
	if _, _, err := cl.OpenChannel("tether@tether.sh", nil); err == nil || !strings.Contains(err.Error(), "MaxSessionsPerConnection (10)") {
		t.Fatalf("11th channel: %v, want the MaxSessionsPerConnection refusal", err)
	}
	// Say nothing: the agent closes each after FirstRequestTimeout (10 s).
	start := time.Now()
	for i, ch := range chans {
		done := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, ch); done <- err }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("idle channel %d still open after %s", i, time.Since(start))
		}
	}
	// Freed: the connection opens channels again.
	WaitFor(t, 10*time.Second, "a channel after the idle ones closed", func() bool {
		ch, reqs, err := cl.OpenChannel("tether@tether.sh", nil)
		if err != nil {
			return false
		}
		go ssh.DiscardRequests(reqs)
		ch.Close()
		return true
	})
}

// TestAttackFanOutWithinChannelCap: a fan-out at the default throttle (32)
// over 40 sessions of one agent works with MaxSessionsPerConnection 10 —
// the client opens more connections — and no channel is refused.
func TestAttackFanOutWithinChannelCap(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxShellsPerUser", "unlimited")
	var targets []string
	for i := 0; i < 40; i++ {
		targets = append(targets, strings.TrimSpace(c.MustRun("new", "--name", fmt.Sprintf("f%d", i), a.Host())))
	}
	out := c.MustRun("invoke", strings.Join(targets, ","), "sleep 0.2; echo ok")
	if n := strings.Count(out, ": ok\n"); n != 40 {
		t.Fatalf("%d of 40 targets answered:\n%s", n, out)
	}
	if strings.Contains(a.Log(), "MaxSessionsPerConnection") {
		t.Fatalf("the agent refused channels of the fan-out:\n%s", a.Log())
	}
}

// TestAttackAcceptEMFILE: the agent out of file descriptors keeps running
// and serves again once they are free (ba048d0 exited on EMFILE).
func TestAttackAcceptEMFILE(t *testing.T) {
	a, c := setup(t)
	pid := a.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skip("no /proc: ", err)
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skip("prlimit: ", err)
	}
	// Only the soft limit: raising a hard limit back needs
	// CAP_SYS_RESOURCE, which a container's root may lack (CI's did, and
	// the agent was left with a few descriptors for good).
	low := unix.Rlimit{Cur: uint64(len(fds) + 10), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Skip("prlimit: ", err)
	}
	// Idle connections from several loopback sources, so that
	// MaxStartupsPerSource does not close them before descriptors run out.
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := 0; i < 80; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i/15))}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", a.Addr)
		if err != nil {
			break
		}
		conns = append(conns, nc)
	}
	WaitFor(t, 20*time.Second, "the agent to hit EMFILE on accept", func() bool {
		return strings.Contains(a.Log(), "too many open files")
	})
	for _, nc := range conns {
		nc.Close()
	}
	conns = nil
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatalf("restore the agent's descriptor limit: %v", err)
	}
	select {
	case <-a.done:
		t.Fatalf("the agent exited:\n%s", a.Log())
	default:
	}
	var last Result
	WaitFor(t, 20*time.Second, "the agent to serve again", func() bool {
		last = c.Run("invoke", a.Host(), "echo back")
		if last.Code == 0 && last.Stdout == "back\n" {
			return true
		}
		t.Logf("not yet: exit %d stdout %q stderr %q", last.Code, last.Stdout, last.Stderr)
		return false
	})
	if !strings.Contains(a.Log(), "accept failed; retrying") {
		t.Fatal("no log line about the retried accept")
	}
}

// TestAttackFloodFromOneSource: a fast unauthenticated flood from
// 127.0.0.2 (connections that idle until dropped, and ones that hang up
// at once) while a real user on 127.0.0.1 runs 20 commands: none is
// refused, and the flooding source is penalized.
func TestAttackFloodFromOneSource(t *testing.T) {
	a, c := setup(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts atomic.Int64
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := d.Dial("tcp", a.Addr)
				attempts.Add(1)
				if err != nil {
					continue
				}
				nc.Write([]byte("SSH-2.0-flood\r\n"))
				if g%2 == 0 {
					nc.SetReadDeadline(time.Now().Add(2 * time.Second))
					io.Copy(io.Discard, nc) // idle until the agent drops it
				}
				nc.Close()
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	WaitFor(t, 10*time.Second, "the flood to start", func() bool { return attempts.Load() > 500 })
	for i := 0; i < 20; i++ {
		if r := c.Run("invoke", a.Host(), "echo ok"); r.Code != 0 || r.Stdout != "ok\n" {
			t.Fatalf("command %d during the flood: %d %q %q", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	if !strings.Contains(a.Log(), "source penalized") || !strings.Contains(a.Log(), "127.0.0.2") {
		t.Fatalf("the flooding source was not penalized (%d attempts)", attempts.Load())
	}
}
