package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/agent"
	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/wire"
)

// inProcessAgents starts n agents in the test process (their session hosts
// are the tether binary), all trusting one key, with policy (TOML; empty:
// none) as their policy file; it returns their addresses and a Dialer for
// them with that key, a known_hosts of its own and the current user.
func inProcessAgents(t *testing.T, n int, policy string) ([]string, *Dialer) {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	root := e2e.ShortTempDir(t) // not below /tmp: the agent refuses keys there, as sshd does
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(root, "authorized_keys")
	if err := os.WriteFile(keys, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(root, "policy.toml")
	if policy != "" {
		if err := os.WriteFile(policyPath, []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var addrs []string
	for i := range n {
		state := filepath.Join(root, fmt.Sprintf("state%d", i))
		a, err := agent.New(agent.Options{StateDir: state, AuthorizedKeys: keys, PolicyPath: policyPath,
			Executable: e2e.Binary(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { a.Serve(ctx, ln); close(served) }()
		t.Cleanup(func() {
			cancel()
			ln.Close()
			<-served
			e2e.KillSessionHosts(state)
		})
		addrs = append(addrs, ln.Addr().String())
	}
	d := &Dialer{
		Signers:     []ssh.Signer{signer},
		KnownHosts:  &sshauth.KnownHosts{Path: filepath.Join(root, "known_hosts")},
		DefaultUser: me.Username,
		Client:      wire.Client{ID: "client-test", Host: "testbox"},
	}
	return addrs, d
}

// newBuiltinSession opens the builtin session target.Session through d,
// on a connection of its own.
func newBuiltinSession(t *testing.T, d *Dialer, target Target) {
	t.Helper()
	c, err := d.Dial(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wc, ch, err := c.Open(wire.Request{Op: opNew, Session: target.Session, Shell: "builtin", Client: d.Client})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil || !resp.OK {
		t.Fatalf("new: %v %+v", err, resp.Error)
	}
}
