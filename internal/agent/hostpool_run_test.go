package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/wire"
)

// clientFor authorizes a new key for the current user and returns a
// tether client dialer for the agent.
func (ta *testAgent) clientFor(t *testing.T) (*client.Dialer, string) {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ta.keys, me.Username), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &client.Dialer{Signers: []ssh.Signer{signer}, DefaultUser: me.Username, Client: testClient,
		KnownHosts: &sshauth.KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}}
	return d, me.Username
}

// TestPlainRunsKeepTheSessionHostConnection: runs on channels of their own
// (no KeepChannel: a fresh `tether invoke` each) and a fan-out's runs (mux
// sub-streams) go to the session host on the connection the first one
// opened; output, exit codes and bulk output are whole, nothing is
// delivered twice, and the session's end lets go of the connection.
func TestPlainRunsKeepTheSessionHostConnection(t *testing.T) {
	ta := startAgent(t, e2e.Binary(t))
	ta.a.hosts.mu.Lock()
	ta.a.hosts.idleTime = time.Minute // a slow machine's gaps between the runs must not count
	ta.a.hosts.mu.Unlock()
	d, _ := ta.clientFor(t)
	ctx := context.Background()
	target, err := client.ParseTarget(ta.addr + "/kept")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Call(ctx, wire.Request{Op: wire.OpNew, Session: "kept", Client: testClient}); err != nil {
		t.Fatal(err)
	}
	run := func(cmd string) (string, int) {
		t.Helper()
		var out bytes.Buffer
		res, err := d.Run(ctx, conn, client.RunSpec{Target: target, Request: wire.Request{Command: cmd}, Stdout: &out, Stderr: io.Discard})
		if err != nil {
			t.Fatalf("run %q: %v", cmd, err)
		}
		return out.String(), res.ExitCode
	}
	for i := range 4 {
		out, code := run(fmt.Sprintf("echo run-%d; exit %d", i, i))
		if out != fmt.Sprintf("run-%d\n", i) || code != i {
			t.Fatalf("run %d: %q, exit %d", i, out, code)
		}
	}
	if dials, reuses := ta.a.hosts.dials.Load(), ta.a.hosts.reuses.Load(); dials != 1 || reuses != 3 {
		t.Fatalf("4 runs: %d dials, %d on a kept connection; want 1 and 3", dials, reuses)
	}

	const bulk = 20 << 20
	var n byteCount
	if _, err := d.Run(ctx, conn, client.RunSpec{Target: target, Request: wire.Request{Command: fmt.Sprintf("head -c %d /dev/zero", bulk)}, Stdout: &n, Stderr: io.Discard}); err != nil || n != bulk {
		t.Fatalf("bulk run: %d bytes, %v; want %d", n, err, bulk)
	}
	if out, _ := run("echo after-bulk"); out != "after-bulk\n" {
		t.Fatalf("after the bulk run: %q", out)
	}

	f := &client.FanOut{Dialer: d, Stdout: io.Discard, Stderr: io.Discard, JSON: true}
	for i := range 2 {
		res := f.Invoke(ctx, []client.Target{target}, wire.Request{Command: "true"}, nil)
		if res[0].Err != nil || res[0].ExitCode != 0 {
			t.Fatalf("fan-out %d: %+v", i, res[0])
		}
	}
	if dials, reuses := ta.a.hosts.dials.Load(), ta.a.hosts.reuses.Load(); dials != 1 || reuses != 7 {
		t.Fatalf("after the bulk run and two fan-outs: %d dials, %d on a kept connection; want 1 and 7", dials, reuses)
	}

	var pending bytes.Buffer
	if _, err := d.Receive(ctx, client.ReceiveSpec{Target: target, Stdout: &pending, Stderr: &pending}); err != nil || pending.Len() != 0 {
		t.Fatalf("receive after the runs: %q, %v; want nothing (every record delivered once)", pending.String(), err)
	}

	ref := ta.a.lookup(testUser(t), "kept")
	if _, err := conn.Call(ctx, wire.Request{Op: wire.OpRemove, Session: "kept", Client: testClient}); err != nil {
		t.Fatal(err)
	}
	ta.a.hosts.mu.Lock()
	left := len(ta.a.hosts.idle[ref])
	ta.a.hosts.mu.Unlock()
	if ref == nil || left != 0 {
		t.Fatalf("after remove: %d connections kept for the session (ref %v), want none", left, ref != nil)
	}
}

type byteCount int

func (c *byteCount) Write(p []byte) (int, error) { *c += byteCount(len(p)); return len(p), nil }

func testUser(t *testing.T) string {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(me.Username)
}
