package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/wire"
)

// TestMain removes the tether binary e2e.Binary builds for the tests that
// start session hosts.
func TestMain(m *testing.M) { e2e.Main(m) }

// These tests run an agent inside the test process on a loopback listener
// and talk to it with a real x/crypto/ssh client, one channel per request,
// as the tether client does. Only tests that open sessions need the tether
// binary (for the session hosts the agent starts).

// The protocol names the tests depend on, in one place (issue 13 moves
// them into wire).
const (
	opNew         = "new"
	opList        = "list"
	opRemove      = "remove"
	opConfigList  = "config.list"
	opConfigGet   = "config.get"
	opConfigSet   = "config.set"
	opConfigReset = "config.reset"
)

type testAgent struct {
	t      *testing.T
	a      *Agent
	addr   string
	state  string
	keys   string // authorized keys, one file per user: keys/USER
	stop   context.CancelFunc
	served chan error
}

// startAgent runs an in-process agent. exe is the session hosts' binary
// ("" for tests that open no session).
func startAgent(t *testing.T, exe string) *testAgent { return startAgentWith(t, exe, nil) }

// startAgentWith is startAgent with the options edited.
func startAgentWith(t *testing.T, exe string, edit func(*Options)) *testAgent {
	t.Helper()
	// Not below /tmp: like sshd, the agent refuses keys below a
	// world-writable directory. Short, for the session sockets.
	root := e2e.ShortTempDir(t)
	keys := filepath.Join(root, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, "state")
	if exe == "" {
		exe = "/nonexistent/tether"
	}
	opts := Options{
		Listen: "127.0.0.1:0", StateDir: state, AuthorizedKeys: filepath.Join(keys, "%u"),
		PolicyPath: filepath.Join(root, "no-policy.toml"), Executable: exe,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
		e2e.KillSessionHosts(state)
	})
	return &testAgent{t: t, a: a, addr: ln.Addr().String(), state: state, keys: keys, stop: cancel, served: served}
}

// dial authorizes a new key for name and connects as name.
func (ta *testAgent) dial(name string) *ssh.Client {
	ta.t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		ta.t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		ta.t.Fatal(err)
	}
	line := ssh.MarshalAuthorizedKey(signer.PublicKey())
	f, err := os.OpenFile(filepath.Join(ta.keys, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		ta.t.Fatal(err)
	}
	f.Write(line)
	f.Close()
	c, err := ssh.Dial("tcp", ta.addr, &ssh.ClientConfig{
		User: name, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // the host key is the test's own agent's
		Timeout:         10 * time.Second,
	})
	if err != nil {
		ta.t.Fatalf("ssh as %s: %v", name, err)
	}
	ta.t.Cleanup(func() { c.Close() })
	return c
}

var testClient = wire.Client{ID: "test-client", Host: "testbox"}

// call sends one request on its own channel and returns the response.
func call(t *testing.T, c *ssh.Client, req wire.Request) wire.Response {
	t.Helper()
	ch, reqs, err := c.OpenChannel(ChannelType, nil)
	if err != nil {
		t.Fatalf("%s: open channel: %v", req.Op, err)
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	if req.Client.ID == "" {
		req.Client = testClient
	}
	wc := wire.NewConn(ch, 0)
	if _, err := wc.HandshakeRequest(wire.Hello{Software: "agent-test"}, req); err != nil {
		t.Fatalf("%s: handshake: %v", req.Op, err)
	}
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		t.Fatalf("%s: response: %v", req.Op, err)
	}
	return resp
}

func mustOK(t *testing.T, resp wire.Response, what string) wire.Response {
	t.Helper()
	if !resp.OK {
		t.Fatalf("%s refused: %+v", what, resp.Error)
	}
	return resp
}

func wantRefusal(t *testing.T, resp wire.Response, code, mentions, what string) {
	t.Helper()
	if resp.OK || resp.Error == nil || resp.Error.Code != code {
		t.Fatalf("%s: answered %+v, want a %s refusal", what, resp.Error, code)
	}
	if !strings.Contains(resp.Error.Message, mentions) {
		t.Fatalf("%s: refusal %q does not mention %q", what, resp.Error.Message, mentions)
	}
}

// nonAdmin is an unprivileged account every Linux system has, for requests
// that must be refused to a non-admin (it opens no session: its home need
// not exist).
func nonAdmin(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a non-admin other than the agent's own user needs a root agent")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody on this system")
	}
	return "nobody"
}

func self(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestConfigOpsAndAdminRights(t *testing.T) {
	ta := startAgent(t, "")
	admin := ta.dial(self(t))

	list := mustOK(t, call(t, admin, wire.Request{Op: opConfigList}), "config list")
	if len(list.Config) < 10 {
		t.Fatalf("config list has %d entries", len(list.Config))
	}
	get := mustOK(t, call(t, admin, wire.Request{Op: opConfigGet, Key: "MaxShellsPerUser"}), "config get")
	if len(get.Config) != 1 || get.Config[0].Value != "30" || get.Config[0].Default != "30" {
		t.Fatalf("config get MaxShellsPerUser: %+v", get.Config)
	}
	wantRefusal(t, call(t, admin, wire.Request{Op: opConfigGet, Key: "NoSuchKey"}), wire.CodeBadRequest, "NoSuchKey", "config get of an unknown key")
	wantRefusal(t, call(t, admin, wire.Request{Op: opConfigSet, Key: "MaxShellsPerUser", Value: "many"}), wire.CodeBadRequest, "many", "config set of a bad value")

	set := mustOK(t, call(t, admin, wire.Request{Op: opConfigSet, Key: "MaxShellsPerUser", Value: "2"}), "config set")
	if set.Config[0].Value != "2" {
		t.Fatalf("config set answered %+v", set.Config)
	}
	if v := mustOK(t, call(t, admin, wire.Request{Op: opConfigGet, Key: "MaxShellsPerUser"}), "config get").Config[0].Value; v != "2" {
		t.Fatalf("after set, get says %s", v)
	}
	reset := mustOK(t, call(t, admin, wire.Request{Op: opConfigReset, Key: "MaxShellsPerUser"}), "config reset")
	if reset.Config[0].Value != "30" {
		t.Fatalf("config reset answered %+v", reset.Config)
	}

	other := ta.dial(nonAdmin(t))
	mustOK(t, call(t, other, wire.Request{Op: opConfigGet, Key: "MaxShellsPerUser"}), "config get by a non-admin")
	wantRefusal(t, call(t, other, wire.Request{Op: opConfigSet, Key: "MaxShellsPerUser", Value: "100"}), wire.CodeDenied, "admin", "config set by a non-admin")
	wantRefusal(t, call(t, other, wire.Request{Op: opConfigReset, Key: "MaxShellsPerUser"}), wire.CodeDenied, "admin", "config reset by a non-admin")
	if v := mustOK(t, call(t, admin, wire.Request{Op: opConfigGet, Key: "MaxShellsPerUser"}), "config get").Config[0].Value; v != "30" {
		t.Fatalf("a refused set changed the value to %s", v)
	}
}

func TestRefusalsNeedNoSession(t *testing.T) {
	ta := startAgent(t, "")
	c := ta.dial(self(t))
	wantRefusal(t, call(t, c, wire.Request{Op: "frobnicate"}), wire.CodeBadRequest, "frobnicate", "an unknown op")
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "../etc"}), wire.CodeBadRequest, "", "new with a path for a name")
	wantRefusal(t, call(t, c, wire.Request{Op: opRemove, Session: "nothing-here"}), wire.CodeNotFound, "nothing-here", "remove of no session")
	wantRefusal(t, call(t, c, wire.Request{Op: "status", Session: "nothing-here"}), wire.CodeNotFound, "nothing-here", "status of no session")
	mustOK(t, call(t, c, wire.Request{Op: opConfigSet, Key: "AllowRemoteShellAccess", Value: "false"}), "config set")
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "work"}), wire.CodeLimit, "AllowRemoteShellAccess", "new while shells are not allowed")
	mustOK(t, call(t, c, wire.Request{Op: opConfigSet, Key: "MaxIdleTimeout", Value: "1h"}), "config set")
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "work", IdleTimeout: "2h"}), wire.CodeLimit, "MaxIdleTimeout", "new with an idle timeout above the maximum")
	if l := mustOK(t, call(t, c, wire.Request{Op: opList}), "list"); len(l.Sessions) != 0 {
		t.Fatalf("list of a fresh agent: %+v", l.Sessions)
	}
}

// Sessions need session hosts, so the tether binary.
func TestNewListRemoveAndLimits(t *testing.T) {
	ta := startAgent(t, e2e.Binary(t))
	c := ta.dial(self(t))
	mustOK(t, call(t, c, wire.Request{Op: opConfigSet, Key: "MaxShellsPerUser", Value: "2"}), "config set")

	s := mustOK(t, call(t, c, wire.Request{Op: opNew, Session: "work"}), "new work")
	if s.Session == nil || s.Session.Name != "work" || s.Session.State != wire.StateOpened {
		t.Fatalf("new answered %+v", s.Session)
	}
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "work"}), wire.CodeExists, "work", "new of an existing name")
	picked := mustOK(t, call(t, c, wire.Request{Op: opNew}), "new without a name")
	if picked.Session == nil || picked.Session.Name == "" {
		t.Fatalf("new without a name answered %+v", picked.Session)
	}
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "third"}), wire.CodeLimit, "MaxShellsPerUser (2)", "new beyond MaxShellsPerUser")

	l := mustOK(t, call(t, c, wire.Request{Op: opList}), "list")
	names := map[string]bool{}
	for _, si := range l.Sessions {
		names[si.Name] = true
	}
	if len(l.Sessions) != 2 || !names["work"] || !names[picked.Session.Name] {
		t.Fatalf("list: %+v", l.Sessions)
	}

	mustOK(t, call(t, c, wire.Request{Op: opRemove, Session: "work"}), "remove work")
	wantRefusal(t, call(t, c, wire.Request{Op: "status", Session: "work"}), wire.CodeClosed, "closed", "status of a removed session")
	mustOK(t, call(t, c, wire.Request{Op: opNew, Session: "third"}), "new once a slot is free")

	// Another user's session is not there for a non-admin to remove.
	other := ta.dial(nonAdmin(t))
	wantRefusal(t, call(t, other, wire.Request{Op: opRemove, Session: "third"}), wire.CodeNotFound, "third", "remove of another user's session")
	if l := mustOK(t, call(t, other, wire.Request{Op: opList}), "list by another user"); len(l.Sessions) != 0 {
		t.Fatalf("another user sees sessions: %+v", l.Sessions)
	}
}

// TestNewSeesALimitAnotherAgentJustRaised: a user's agents share the
// settings file (one stdio agent per ssh connection or master); a limit
// raised through one holds in the other at once, not after its next two
// polls of the file, so a `tether new` right after `tether config set` is
// not refused with the old value.
func TestNewSeesALimitAnotherAgentJustRaised(t *testing.T) {
	shared := filepath.Join(e2e.ShortTempDir(t), "config.toml")
	if err := os.WriteFile(shared, []byte("MaxShellsPerUser = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setter := startAgentWith(t, "", func(o *Options) { o.ConfigPath = shared })
	opener := startAgentWith(t, e2e.Binary(t), func(o *Options) { o.ConfigPath = shared })
	c := opener.dial(self(t))
	mustOK(t, call(t, c, wire.Request{Op: opNew, Session: "one"}), "new one")
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "two"}), wire.CodeLimit, "MaxShellsPerUser (1)", "new beyond MaxShellsPerUser")

	sc := setter.dial(self(t))
	defer sc.Close()
	mustOK(t, call(t, sc, wire.Request{Op: opConfigSet, Key: "MaxShellsPerUser", Value: "3"}), "config set through the other agent")
	// The refusal's retry reserved no slot of its own: exactly two more.
	mustOK(t, call(t, c, wire.Request{Op: opNew, Session: "two"}), "new right after the other agent raised MaxShellsPerUser")
	mustOK(t, call(t, c, wire.Request{Op: opNew, Session: "three"}), "new up to the raised limit")
	wantRefusal(t, call(t, c, wire.Request{Op: opNew, Session: "four"}), wire.CodeLimit, "MaxShellsPerUser (3)", "new beyond the raised limit")
}

// TestConnectionSeesALimitAnotherAgentJustRaised is the same for
// MaxConnections, which is counted when a connection authenticates.
func TestConnectionSeesALimitAnotherAgentJustRaised(t *testing.T) {
	shared := filepath.Join(e2e.ShortTempDir(t), "config.toml")
	if err := os.WriteFile(shared, []byte("MaxConnections = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setter := startAgentWith(t, "", func(o *Options) { o.ConfigPath = shared })
	holder := startAgentWith(t, "", func(o *Options) { o.ConfigPath = shared })
	first := holder.dial(self(t))
	defer first.Close()
	mustOK(t, call(t, first, wire.Request{Op: opList}), "list on the first connection")
	refused := holder.dial(self(t))
	if _, _, err := refused.OpenChannel(ChannelType, nil); err == nil || !strings.Contains(err.Error(), "MaxConnections (1") {
		t.Fatalf("a second connection under MaxConnections 1: %v, want refused", err)
	}
	refused.Close()

	sc := setter.dial(self(t))
	defer sc.Close()
	mustOK(t, call(t, sc, wire.Request{Op: opConfigSet, Key: "MaxConnections", Value: "2"}), "config set through the other agent")
	second := holder.dial(self(t))
	defer second.Close()
	mustOK(t, call(t, second, wire.Request{Op: opList}), "list on a second connection right after the other agent raised MaxConnections")
}
