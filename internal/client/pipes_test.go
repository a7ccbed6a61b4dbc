package client

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/e2e"
	"github.com/tether-sh/tether/internal/sshauth"
	"github.com/tether-sh/tether/internal/wire"
)

// keptSetup starts an agent, dials it and opens a session.
func keptSetup(t testing.TB) (*Dialer, *Conn, Target) {
	t.Helper()
	dir := e2e.ShortTempDir(t)
	key := filepath.Join(dir, "id_ed25519")
	e2e.Keygen(t, key)
	a := e2e.StartAgent(t, e2e.AgentOptions{Keys: []string{key + ".pub"}})
	pem, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := user.Current()
	d := &Dialer{
		Signers:     []ssh.Signer{signer},
		KnownHosts:  &sshauth.KnownHosts{Path: filepath.Join(dir, "known_hosts"), DefaultPort: DefaultPort},
		DefaultUser: u.Username,
		Client:      wire.Client{ID: "kept-test", Host: "test"},
	}
	target, err := ParseTarget(a.Host() + "/kept")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := d.Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Call(ctx, wire.Request{Op: "new", Session: "kept", Client: d.Client}); err != nil {
		t.Fatal(err)
	}
	return d, conn, target
}

func (c *Conn) keptCount(session string) int {
	c.kept.mu.Lock()
	defer c.kept.mu.Unlock()
	return len(c.kept.idle[session])
}

func TestKeptChannelCarriesManyRuns(t *testing.T) {
	d, conn, target := keptSetup(t)
	ctx := context.Background()
	run := func(cmd string, stdin string) (string, Result) {
		t.Helper()
		var out bytes.Buffer
		spec := RunSpec{Target: target, Request: wire.Request{Command: cmd}, Stdout: &out, Stderr: &out, KeepChannel: true}
		if stdin != "" {
			spec.Stdin = strings.NewReader(stdin)
		}
		res, err := d.Run(ctx, conn, spec)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return out.String(), res
	}
	run("x=41", "")
	for i := range 20 {
		out, res := run(`x=$((x+1)); echo $x; exit 3`, "")
		if want := strings.TrimSpace(out); want != string(rune('0'+(42+i)/10))+string(rune('0'+(42+i)%10)) || res.ExitCode != 3 {
			t.Fatalf("run %d: output %q exit %d", i, out, res.ExitCode)
		}
		// One channel, taken and put back each time: had a run opened
		// a new one, two would be kept.
		if n := conn.keptCount("kept"); n != 1 {
			t.Fatalf("after run %d, %d channels kept, want 1", i, n)
		}
	}
	// A run with stdin gets a channel of its own and does not keep it.
	if out, _ := run("cat", "piped\n"); out != "piped\n" {
		t.Fatalf("stdin run: %q", out)
	}
	if n := conn.keptCount("kept"); n != 1 {
		t.Fatalf("after a stdin run, %d channels kept, want 1", n)
	}
	// The session is Opened and Available between runs (once the host has
	// taken the last ack, which the client does not wait for).
	var last wire.SessionInfo
	e2e.WaitFor(t, 5*time.Second, "session Opened and Available", func() bool {
		resp, err := conn.Call(ctx, wire.Request{Op: "status", Session: "kept", Client: d.Client})
		if err != nil {
			t.Fatal(err)
		}
		last = *resp.Session
		return last.State == wire.StateOpened && last.Availability == wire.AvailAvailable
	})
}

func TestKeptChannelOfRemovedSession(t *testing.T) {
	d, conn, target := keptSetup(t)
	ctx := context.Background()
	if _, err := d.Run(ctx, conn, RunSpec{Target: target, Request: wire.Request{Command: "true"}, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, KeepChannel: true}); err != nil {
		t.Fatal(err)
	}
	if conn.keptCount("kept") != 1 {
		t.Fatal("no channel kept")
	}
	if _, err := conn.Call(ctx, wire.Request{Op: "remove", Session: "kept", Client: d.Client}); err != nil {
		t.Fatal(err)
	}
	// The kept channel dies with the session: a run gets the host's
	// "closing" while it closes, then (on a new channel) the agent's "no
	// session" — never a hang or a command run.
	for i := range 2 {
		_, err := d.Run(ctx, conn, RunSpec{Target: target, Request: wire.Request{Command: "true"}, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, KeepChannel: true})
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) {
			t.Fatalf("run %d in a removed session: %v, want ErrNotFound or ErrClosed", i, err)
		}
	}
}

// BenchmarkRunTrue measures a builtin through one long-lived connection,
// on a kept channel and on a new channel per run.
func BenchmarkRunTrue(b *testing.B) {
	for _, kept := range []bool{true, false} {
		name := "kept-channel"
		if !kept {
			name = "new-channel"
		}
		b.Run(name, func(b *testing.B) {
			d, conn, target := keptSetup(b)
			ctx := context.Background()
			spec := RunSpec{Target: target, Request: wire.Request{Command: "true"}, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, KeepChannel: kept}
			for b.Loop() {
				if _, err := d.Run(ctx, conn, spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// On a kept channel the session host takes only plain runs: the agent does
// not see those requests, so anything it would have to check is refused.
func TestKeptChannelRefusesOtherOps(t *testing.T) {
	for _, req := range []wire.Request{
		{Op: "status", Session: "kept"},
		{Op: "close", Session: "kept"},
		{Op: "run", Session: "kept", Module: "netadmin", Argv: wire.Args{"x"}},
	} {
		d, conn, target := keptSetup(t)
		ctx := context.Background()
		if _, err := d.Run(ctx, conn, RunSpec{Target: target, Request: wire.Request{Command: "true"}, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, KeepChannel: true}); err != nil {
			t.Fatal(err)
		}
		kc, ok := conn.kept.take("kept")
		if !ok {
			t.Fatal("no channel kept")
		}
		req.Client = d.Client
		if err := kc.wc.WriteJSON(wire.TRequest, req); err != nil {
			t.Fatal(err)
		}
		var resp wire.Response
		if err := kc.wc.ReadJSON(wire.TResponse, &resp); err != nil {
			t.Fatalf("%s: %v", req.Op, err)
		}
		if resp.OK || resp.Error == nil || resp.Error.Code != wire.CodeBadRequest {
			t.Fatalf("%s on a kept channel: %+v", req.Op, resp)
		}
		// And the connection is closed after the refusal.
		if _, _, err := kc.wc.Read(); err == nil {
			t.Fatalf("%s: the kept channel stayed open after a refusal", req.Op)
		}
		// The session is still there.
		if _, err := conn.Call(ctx, wire.Request{Op: "status", Session: "kept", Client: d.Client}); err != nil {
			t.Fatalf("after %s: %v", req.Op, err)
		}
	}
}
