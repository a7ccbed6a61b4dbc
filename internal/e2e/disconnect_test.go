package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func seq(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

func TestDisconnectedFromAnotherClient(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "job", a.Host()))
	out := c.MustRun("invoke", "--disconnected", addr, `for i in $(seq 1 30); do echo $i; sleep 0.1; done`)
	if strings.TrimSpace(out) != addr {
		t.Fatalf("--disconnected printed %q, want the session address", out)
	}
	b := c.WithKey() // another machine: another HOME, same key, empty registry
	list := b.MustRun("list", a.Host())
	if !strings.Contains(list, "job") || !strings.Contains(list, "Disconnected") {
		t.Fatalf("list from B:\n%s", list)
	}
	b.MustRun("connect", addr)
	r := b.Run("receive", addr)
	if r.Code != 0 || r.Stdout != seq(30) {
		t.Fatalf("receive: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = b.Run("receive", addr)
	if r.Code != 0 || r.Stdout != "" {
		t.Fatalf("second receive delivered again: %q", r.Stdout)
	}
	// B's registry now knows it.
	if !strings.Contains(b.MustRun("list"), "job") {
		t.Fatal("connect did not add the session to B's registry")
	}
	// --all replays what the journal still holds (acked records are gone
	// once their segment is; the journal is small here so nothing remains or
	// some remains, but never an error).
	if r := b.Run("receive", "--all", addr); r.Code != 0 {
		t.Fatalf("receive --all: %d %s", r.Code, r.Stderr)
	}
}

func TestInvokeDisconnectedBareHost(t *testing.T) {
	a, c := setup(t)
	out := strings.TrimSpace(c.MustRun("invoke", "--disconnected", a.Host(), "echo done; exit 4"))
	if !strings.HasPrefix(out, a.Host()+"/") {
		t.Fatalf("bare host --disconnected printed %q", out)
	}
	r := c.Run("receive", out)
	if r.Code != 4 || r.Stdout != "done\n" {
		t.Fatalf("receive: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

func TestBusyAndForce(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "held", a.Host()))
	b := c.WithKey()
	// Only an attached client holds a session: creating it holds nothing.
	if r := b.Run("connect", addr); r.Code != 0 {
		t.Fatalf("connect to a session nobody is attached to: exit %d %q", r.Code, r.Stderr)
	}
	// A long command attached in A is told when B takes over.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", addr, "echo go; sleep 30")
	var aout, aerr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &aout, &aerr
	cmd.Start()
	WaitFor(t, 10*time.Second, "command running", func() bool { return strings.Contains(b.Run("list", a.Host()).Stdout, "sleep 30") })
	if r := b.Run("connect", addr); r.Code != 255 || !strings.Contains(r.Stderr, "Busy") || !strings.Contains(r.Stderr, "since") {
		t.Fatalf("connect to a session another client is attached to: exit %d %q", r.Code, r.Stderr)
	}
	b.MustRun("connect", "--force", addr)
	cmd.Wait()
	if !strings.Contains(aerr.String(), "taken over") {
		t.Fatalf("A was not told: %q", aerr.String())
	}
	// A's stream ended with the takeover and B attached nothing: nobody
	// holds the session now, A may connect again.
	if r := c.Run("connect", addr); r.Code != 0 {
		t.Fatalf("A after takeover: %d %q", r.Code, r.Stderr)
	}
}

func TestClosedSessionSaysWhy(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	c.MustRun("remove", addr)
	for _, args := range [][]string{{"connect", addr}, {"receive", addr}, {"invoke", addr, "true"}} {
		r := c.Run(args...)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Closed") || !strings.Contains(r.Stderr, "removed") {
			t.Fatalf("%v: exit %d %q", args[0], r.Code, r.Stderr)
		}
	}
}

func TestNetworkCutsExactlyOnce(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "cut", a.Host()))
	p, err := NewCutProxy(a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Trust the agent's key under the proxy's address too.
	c.MustRun("invoke", p.Addr(), "true")
	via := p.Addr() + "/cut"

	data := make([]byte, 20<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	in := filepath.Join(ShortTempDir(t), "in")
	os.WriteFile(in, data, 0o644)

	minCuts := 50
	if testing.Short() {
		minCuts = 10
	}
	maxRounds := 150 // a fast round may see no cut: the loop ends at minCuts
	// The soak (make soak): TETHER_SOAK_CUTS=1000.
	if n, err := strconv.Atoi(os.Getenv("TETHER_SOAK_CUTS")); err == nil && n > 0 {
		minCuts, maxRounds = n, n
	}
	start := time.Now()
	total := int64(0)
	rounds := 0
	for round := 0; total < int64(minCuts) && round < maxRounds; round++ {
		rounds++
		before := p.Cuts()
		stop := make(chan struct{})
		// Cuts begin once the command's data flows: a cut of the
		// first connection's handshake fails the command (the first dial
		// is not retried, as ssh's ConnectionAttempts=1), which is not
		// what this test is about; every reconnection's may be cut.
		go p.CutRandomlyAfter(stop, p.Carried()+256<<10, 20*time.Millisecond, 200*time.Millisecond)
		// Both directions: 20 MB in through stdin, 20 MB back out.
		r := c.RunIn(bytes.NewReader(data), "invoke", via, "cat")
		close(stop)
		if r.Code != 0 {
			hostLog, _ := os.ReadFile(filepath.Join(a.State, "s", c.User, "cut", "host.log"))
			t.Fatalf("round %d: exit %d: %.2000s\nsession host log:\n%s", round, r.Code, r.Stderr, hostLog)
		}
		if got := sha256.Sum256([]byte(r.Stdout)); got != want {
			t.Fatalf("round %d: %d bytes back, hash differs after %d cuts", round, len(r.Stdout), p.Cuts()-before)
		}
		total += p.Cuts() - before
	}
	if total < int64(minCuts) {
		t.Fatalf("only %d cuts happened, want at least %d", total, minCuts)
	}
	t.Logf("%d cuts over %d rounds of 20 MB each way in %s: every byte delivered exactly once, in order",
		total, rounds, time.Since(start).Round(time.Second))
	_ = addr
}

func TestAgentKill9KeepsSessions(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "k9", a.Host()))
	c.MustRun("invoke", addr, "kept=42")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", addr, `for i in $(seq 1 40); do echo $i; sleep 0.05; done; exit 7`)
	var out, errb SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "some output", func() bool { return strings.Contains(out.String(), "3\n") })
	a.Kill9()
	time.Sleep(300 * time.Millisecond) // the command goes on without an agent
	a.Restart()
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Fatalf("exit %d (%v), want 7; stderr: %s", code, err, errb.String())
	}
	if out.String() != seq(40) {
		t.Fatalf("output across the restart: %q", out.String())
	}
	if got := c.MustRun("invoke", addr, "echo $kept"); got != "42\n" {
		t.Fatalf("variables after restart: %q", got)
	}
	if !strings.Contains(c.MustRun("list", a.Host()), "k9") {
		t.Fatal("restarted agent does not list the session")
	}
}

// TestAgentRestartLikeSystemd restarts the agent as contrib/systemd's unit
// does (KillMode=process: SIGTERM to the agent only, then a new ExecStart).
func TestAgentRestartLikeSystemd(t *testing.T) {
	unit, err := os.ReadFile("../../contrib/systemd/tether.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nKillMode=process\n") {
		t.Fatal("the unit must keep session hosts alive on restart: KillMode=process")
	}
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "sd", a.Host()))
	c.MustRun("invoke", addr, "v=before")
	out := c.MustRun("invoke", "--disconnected", addr, `for i in $(seq 1 20); do echo $i; sleep 0.05; done; exit 5`)
	if strings.TrimSpace(out) != addr {
		t.Fatalf("--disconnected printed %q", out)
	}
	a.Term()
	a.Restart()
	b := c.WithKey()
	if l := b.MustRun("list", a.Host()); !strings.Contains(l, "sd") {
		t.Fatalf("sessions lost over the restart:\n%s", l)
	}
	b.MustRun("connect", addr)
	r := b.Run("receive", addr)
	if r.Code != 5 || r.Stdout != seq(20) {
		t.Fatalf("receive after restart: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := b.MustRun("invoke", addr, "echo $v"); got != "before\n" {
		t.Fatalf("state after restart: %q", got)
	}
}

// TestTemporarySessionClientGone: a client killed during a command in a
// temporary session does not leave it running: after the reconnect grace the
// host interrupts the command and closes the session.
func TestTemporarySessionClientGone(t *testing.T) {
	a, c := setup(t)
	marker := filepath.Join(ShortTempDir(t), "still-running")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", "--reconnect-timeout", "1s", a.Host(), "while :; do touch "+marker+"; sleep 0.1; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the command to run", func() bool { _, err := os.Stat(marker); return err == nil })
	cmd.Process.Kill()
	cmd.Wait()
	WaitFor(t, 20*time.Second, "the temporary session to close", func() bool {
		return !strings.Contains(c.MustRun("list", a.Host()), "tmp-")
	})
	os.Remove(marker)
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command still runs after its temporary session closed")
	}
}
