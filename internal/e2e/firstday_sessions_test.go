package e2e

// End-to-end tests of the first-day findings about sessions (issue 12:
// items 3, 4, 5, 6, 7, 9, 10 and the first half of 14).

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listRow is one `tether list --json` line.
type listRow struct {
	Address      string `json:"address"`
	Name         string `json:"name"`
	State        string `json:"state"`
	Availability string `json:"availability"`
	HeldBy       string `json:"held_by"`
	Command      string `json:"command"`
	Reason       string `json:"reason"`
}

// listJSON runs list --json with args and returns the rows by name, and
// the raw output.
func listJSON(t *testing.T, c *Client, args ...string) (map[string]listRow, string) {
	t.Helper()
	out := c.MustRun(append([]string{"list", "--json"}, args...)...)
	rows := map[string]listRow{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var r listRow
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		rows[r.Name] = r
	}
	return rows, out
}

// clientID is the short id a client shows in HELD BY ("host (client abc123)").
func clientID(t *testing.T, c *Client) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Home, ".config", "tether", "client-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))[:6]
}

// deadPort is a loopback address where nothing listens.
func deadPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Item 3: after each thing client A does, `list` from client B predicts
// exactly whether B's invoke runs, and a Busy session names its holder.
func TestListPredictsInvokeFromAnotherClient(t *testing.T) {
	a, ca := setup(t)
	cb := ca.WithKey()
	addr := strings.TrimSpace(ca.MustRun("new", "--name", "shared", a.Host()))
	cb.MustRun("list", a.Host()) // known_hosts for B
	idA := clientID(t, ca)

	// check lists the session from B, compares with want, and runs B's
	// invoke: it must succeed exactly when list said Opened/Available.
	check := func(step, wantState, wantAvail string) {
		t.Helper()
		rows, raw := listJSON(t, cb, a.Host())
		r, ok := rows["shared"]
		if !ok {
			t.Fatalf("after %s: B does not list the session:\n%s", step, raw)
		}
		if r.State != wantState || r.Availability != wantAvail {
			t.Fatalf("after %s: B lists %s/%s, want %s/%s:\n%s", step, r.State, r.Availability, wantState, wantAvail, raw)
		}
		if (r.Availability == "Busy") != (r.HeldBy != "" || r.Command != "") {
			t.Fatalf("after %s: a Busy session must say who holds it or what runs: %+v", step, r)
		}
		predicted := r.State == "Opened" && r.Availability == "Available"
		res := cb.Run("invoke", addr, "true")
		if (res.Code == 0) != predicted {
			t.Fatalf("after %s: list from B said %s/%s but B's invoke exited %d: %s", step, r.State, r.Availability, res.Code, res.Stderr)
		}
	}

	check("new", "Opened", "Available")
	ca.MustRun("invoke", addr, "v=1")
	check("invoke", "Opened", "Available")
	ca.MustRun("receive", addr)
	check("receive", "Opened", "Available")
	if r := ca.RunIn(strings.NewReader("echo in-enter\n"), "enter", addr); r.Code != 0 || r.Stdout != "in-enter\n" {
		t.Fatalf("enter: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	check("enter and exit", "Opened", "Available")
	ca.MustRun("disconnect", addr)
	check("disconnect", "Disconnected", "None")
	ca.MustRun("connect", addr)
	check("connect", "Opened", "Available")

	// While A is attached, B finds it Busy, held by A, and is refused.
	busyWhile := func(what string, start func(ctx context.Context) (stop func())) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stop := start(ctx)
		var r listRow
		// Busy alone can come from the running command before A's
		// client attached (receive): wait for the holder too.
		WaitFor(t, 15*time.Second, "B to see the session Busy, held by A, during "+what, func() bool {
			rows, _ := listJSON(t, cb, a.Host())
			r = rows["shared"]
			return r.Availability == "Busy" && strings.Contains(r.HeldBy, idA)
		})
		if !strings.Contains(r.HeldBy, idA) {
			t.Fatalf("during %s: held_by %q, want A's client id %s", what, r.HeldBy, idA)
		}
		table := cb.MustRun("list", a.Host())
		if !strings.Contains(table, "HELD BY") || !strings.Contains(table, idA) {
			t.Fatalf("during %s: the table does not show the holder:\n%s", what, table)
		}
		if res := cb.Run("invoke", addr, "true"); res.Code != 255 || !strings.Contains(res.Stderr, "Busy") && !strings.Contains(res.Stderr, "busy") {
			t.Fatalf("during %s: B's invoke: %d %q", what, res.Code, res.Stderr)
		}
		stop()
		check("the end of "+what, "Opened", "Available")
	}
	// enter, between its commands (stdin stays open, nothing runs).
	busyWhile("enter", func(ctx context.Context) func() {
		cmd := ca.Command(ctx, "enter", addr)
		in, _ := cmd.StdinPipe()
		var out SyncBuffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		io.WriteString(in, "echo ready\n")
		WaitFor(t, 15*time.Second, "enter to run a command", func() bool { return out.String() == "ready\n" })
		return func() { in.Close(); cmd.Wait() }
	})
	// A streaming receive.
	ca.MustRun("invoke", "--disconnected", addr, "sleep 300.5151")
	ca.MustRun("connect", addr)
	busyWhile("receive", func(ctx context.Context) func() {
		cmd := ca.Command(ctx, "receive", addr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() {
			// A client killed while it streams holds nothing.
			cmd.Process.Kill()
			cmd.Wait()
			ca.MustRun("interrupt", addr)
			WaitFor(t, 15*time.Second, "the command to end", func() bool { return !sleeping("300.5151") })
			ca.MustRun("connect", addr)
		}
	})
}

// Item 4: Ctrl-C in enter stops the rest of the line, as bash does.
func TestEnterCtrlCStopsTheRestOfTheLine(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "line", a.Host()))
	tt := enterInTmux(t, c, 100, 30, addr)
	tt.waitPrompt()
	for _, line := range []string{
		"sleep 100.6161; echo after-sleep",
		"{ sleep 100.6161; echo after-sleep; }",
		"sleep 100.6161 && echo after-sleep || echo after-sleep",
	} {
		tt.typeLine(line)
		WaitFor(t, 15*time.Second, "sleep to start", func() bool { return sleeping("100.6161") })
		before := tt.prompts()
		tt.keys("C-c")
		tt.waitFor("the prompt after Ctrl-C", func(string) bool { return tt.prompts() > before })
		tt.waitPrompt()
		for _, l := range tt.lines() {
			if strings.HasSuffix(l, "after-sleep") && !strings.Contains(l, "echo") {
				t.Fatalf("%q: the rest of the line ran after Ctrl-C:\n%s", line, tt.screen())
			}
		}
	}
	tt.typeCommand(`echo "status=$?"`)
	if !tt.hasLine("status=130") {
		t.Fatalf("status after Ctrl-C:\n%s", tt.screen())
	}
	tt.typeLine("exit")
	tt.waitLine("TETHER-EXIT=0")
}

// Item 5: a first connection that fails is an error at once; only a
// session that was reached reconnects.
func TestFirstConnectionFailureIsAnErrorAtOnce(t *testing.T) {
	_, c := setup(t)
	dead := deadPort(t) + "/x"
	for _, args := range [][]string{
		{"enter", "--reconnect-timeout", "30s", dead},
		{"receive", "--reconnect-timeout", "30s", dead},
		{"connect", dead},
	} {
		start := time.Now()
		r := c.RunIn(strings.NewReader("echo hi\n"), args...)
		if r.Code != 255 || strings.Contains(r.Stderr, "reconnecting") || !strings.Contains(r.Stderr, "cannot connect") {
			t.Fatalf("%v: exit %d after %s, stderr %q; want 255 at once, without reconnecting", args, r.Code, time.Since(start), r.Stderr)
		}
	}
}

// Item 6: a typo does not poison the registry; list reports unreachable
// hosts as a row state; forget drops entries; closed sessions are pruned.
func TestTypoDoesNotPoisonTheRegistry(t *testing.T) {
	a, c := setup(t)
	real := strings.TrimSpace(c.MustRun("new", "--name", "real", a.Host()))
	dead := deadPort(t)
	reg := filepath.Join(c.Home, ".config", "tether", "sessions.json")

	if r := c.RunIn(strings.NewReader("echo hi\n"), "enter", "--reconnect-timeout", "1s", dead+"/x"); r.Code != 255 {
		t.Fatalf("enter to a dead host: %d %q", r.Code, r.Stderr)
	}
	r := c.Run("enter", a.Host()+"/nope")
	if r.Code != 255 || !strings.Contains(r.Stderr, "no session nope") || strings.Contains(r.Stderr, "still open") {
		t.Fatalf("enter HOST/nope </dev/null: exit %d %q", r.Code, r.Stderr)
	}
	if b, _ := os.ReadFile(reg); bytes.Contains(b, []byte("/x")) || bytes.Contains(b, []byte("nope")) {
		t.Fatalf("failed enters entered the registry:\n%s", b)
	}
	if r := c.Run("list"); r.Code != 0 || !strings.Contains(r.Stdout, "real") || strings.Contains(r.Stdout, "Closed") {
		t.Fatalf("list: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// A remembered session on a host that is down (an older client's
	// typo, or a host gone): a row state, exit 0; --strict fails.
	b, _ := os.ReadFile(reg)
	b = bytes.Replace(b, []byte(`"sessions": [`), []byte(`"sessions": [{"address": "`+c.User+"@"+dead+`/typo", "created": "2026-01-01T00:00:00Z"},`), 1)
	os.WriteFile(reg, b, 0o600)
	rows, raw := listJSON(t, c)
	if rows["typo"].State != "Unreachable" || rows["real"].State != "Opened" {
		t.Fatalf("list with an unreachable host:\n%s", raw)
	}
	if r := c.Run("list", "--strict"); r.Code != 255 {
		t.Fatalf("list --strict with an unreachable host: %d", r.Code)
	}
	if r := c.Run("forget", dead+"/*"); r.Code != 0 {
		t.Fatalf("forget: %d %q", r.Code, r.Stderr)
	}
	if r := c.Run("list", "--strict"); r.Code != 0 || strings.Contains(r.Stdout, "typo") {
		t.Fatalf("list after forget: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Run("forget", dead+"/*"); r.Code != 1 || !strings.Contains(r.Stderr, "no remembered session matches") {
		t.Fatalf("forget of nothing: %d %q", r.Code, r.Stderr)
	}

	// Closed elsewhere: shown Closed once, then forgotten.
	c.WithKey().MustRun("remove", real)
	if rows, raw := listJSON(t, c); rows["real"].State != "Closed" {
		t.Fatalf("list after another client removed it:\n%s", raw)
	}
	if out := c.MustRun("list"); strings.Contains(out, "real") {
		t.Fatalf("a closed session stays in the registry:\n%s", out)
	}
}

// Item 7: receive --all replays what the journal still holds, and list
// --json has no year-1 times.
func TestReceiveAllReplaysAndJSONOmitsZeroTimes(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "replay", a.Host()))
	for _, args := range [][]string{{a.Host()}, {}} {
		_, raw := listJSON(t, c, args...)
		if strings.Contains(raw, "0001-01-01") || strings.Contains(raw, "closed_at") {
			t.Fatalf("list --json %v has zero times:\n%s", args, raw)
		}
	}
	c.MustRun("invoke", "--disconnected", addr, "echo one; echo two >&2; echo three")
	WaitFor(t, 15*time.Second, "the command to end", func() bool {
		rows, _ := listJSON(t, c, a.Host())
		return rows["replay"].Command == ""
	})
	c.MustRun("connect", addr)
	if r := c.Run("receive", addr); r.Stdout != "one\nthree\n" || r.Stderr != "two\n" {
		t.Fatalf("receive: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Run("receive", addr); r.Stdout != "" {
		t.Fatalf("second receive delivered again: %q", r.Stdout)
	}
	entries, _ := os.ReadDir(filepath.Join(a.State, "s", c.User, "replay", "journal"))
	if len(entries) == 0 {
		t.Fatal("no journal segment on disk")
	}
	if r := c.Run("receive", "--all", addr); r.Code != 0 || r.Stdout != "one\nthree\n" || r.Stderr != "two\n" {
		t.Fatalf("receive --all with the segment on disk: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// Item 9: enter HOST/typo says nothing about coming back; tether interrupt
// stops a command from anywhere, and the Busy message names it.
func TestEnterTypoAndInterruptFromAnywhere(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "intr", a.Host()))

	tt := enterInTmux(t, c, 150, 20, a.Host()+"/typo")
	tt.waitLine("TETHER-EXIT=255")
	if s := tt.screen(); strings.Contains(s, "still open") || !strings.Contains(s, "no session typo") {
		t.Fatalf("enter HOST/typo:\n%s", s)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", addr, "sleep 100.7171; echo after-sleep")
	var out, errb SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 15*time.Second, "sleep to start", func() bool { return sleeping("100.7171") })
	b := c.WithKey() // another machine, while A is attached
	if r := b.Run("invoke", addr, "true"); r.Code != 255 || !strings.Contains(r.Stderr, "tether interrupt "+a.Host()+"/intr") {
		t.Fatalf("invoke on a busy session: %d %q", r.Code, r.Stderr)
	}
	if r := b.Run("interrupt", addr); r.Code != 0 || !strings.Contains(r.Stdout, "interrupted") {
		t.Fatalf("interrupt: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 || strings.Contains(out.String(), "after-sleep") {
		t.Fatalf("the interrupted invoke: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if r := b.Run("interrupt", addr); r.Code != 1 || !strings.Contains(r.Stderr, "no command is running") {
		t.Fatalf("interrupt with nothing running: %d %q", r.Code, r.Stderr)
	}
	if r := b.Run("interrupt", a.Host()+"/nope"); r.Code != 255 || !strings.Contains(r.Stderr, "no session nope") {
		t.Fatalf("interrupt of no session: %d %q", r.Code, r.Stderr)
	}
}

// Item 10: source /dev/stdin (and . /dev/stdin, bash -s) read the
// command's stdin; /dev/stdout and /dev/stderr are the command's.
func TestSourceDevStdin(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "src", a.Host()))
	script := "x=7\nf() { echo \"f of $1\"; }\necho sourced $x\n"
	if r := c.RunIn(strings.NewReader(script), "invoke", addr, "source /dev/stdin"); r.Code != 0 || r.Stdout != "sourced 7\n" {
		t.Fatalf("source /dev/stdin: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if out := c.MustRun("invoke", addr, "f $x"); out != "f of 7\n" {
		t.Fatalf("state from the sourced script: %q", out)
	}
	if r := c.RunIn(strings.NewReader("echo dotted; exit 3\n"), "invoke", addr, ". /dev/stdin"); r.Code != 3 || r.Stdout != "dotted\n" {
		t.Fatalf(". /dev/stdin: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.RunIn(strings.NewReader("echo from-sh $0\n"), "invoke", addr, "sh -s"); r.Code != 0 || r.Stdout != "from-sh sh\n" {
		t.Fatalf("sh -s: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.RunIn(strings.NewReader("piped\n"), "invoke", addr, "cat </dev/stdin; echo out >/dev/stdout; echo err >/dev/stderr"); r.Stdout != "piped\nout\n" || r.Stderr != "err\n" {
		t.Fatalf("standard stream names: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestDevNullStdinIsNoStdin: an invoke whose stdin is /dev/null (cron,
// scripts) forwards none, as -n: the command's stdin is /dev/null itself,
// not a pipe that only ever gives EOF (#18: no stdin pipe, copier and EOF
// relay for it); a pipe is still forwarded.
func TestDevNullStdinIsNoStdin(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "null", a.Host()))
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if r := c.RunIn(null, "invoke", addr, "readlink /proc/self/fd/0"); r.Code != 0 || r.Stdout != "/dev/null\n" {
		t.Fatalf("stdin /dev/null: the command's stdin is %q (exit %d, %q), want /dev/null", r.Stdout, r.Code, r.Stderr)
	}
	if r := c.RunIn(strings.NewReader("in\n"), "invoke", addr, "readlink /proc/self/fd/0; cat"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "pipe:") || !strings.HasSuffix(r.Stdout, "\nin\n") {
		t.Fatalf("piped stdin: %q (exit %d, %q), want a pipe that carries it", r.Stdout, r.Code, r.Stderr)
	}
}

// Item 14 (first half): remove --all HOST and remove 'HOST/*' close all
// of the user's sessions on a host, one line each.
func TestRemoveAllSessionsOnAHost(t *testing.T) {
	a, c := setup(t)
	for _, n := range []string{"r1", "r2", "r3"} {
		c.MustRun("new", "--name", n, a.Host())
	}
	out := c.MustRun("remove", "--all", a.Host())
	want := a.Host() + "/r1: removed\n" + a.Host() + "/r2: removed\n" + a.Host() + "/r3: removed\n"
	if out != want {
		t.Fatalf("remove --all printed %q, want %q", out, want)
	}
	if l := c.MustRun("list", a.Host()); strings.Contains(l, "Opened") {
		t.Fatalf("sessions left after remove --all:\n%s", l)
	}
	c.MustRun("new", "--name", "w1", a.Host())
	if out := c.MustRun("remove", a.Host()+"/*"); out != a.Host()+"/w1: removed\n" {
		t.Fatalf("remove HOST/* printed %q", out)
	}
	if r := c.Run("remove", "--all", a.Host()); r.Code != 0 || !strings.Contains(r.Stderr, "no sessions to remove") {
		t.Fatalf("remove --all with none left: %d %q", r.Code, r.Stderr)
	}
	if r := c.Run("remove", a.Host()); r.Code != 255 || !strings.Contains(r.Stderr, "remove --all") {
		t.Fatalf("remove HOST without --all: %d %q", r.Code, r.Stderr)
	}
	if r := c.Run("remove", "--all", a.Host()+","+deadPort(t)); r.Code != 255 || !strings.Contains(r.Stderr, "cannot connect") {
		t.Fatalf("remove --all with an unreachable host: %d %q", r.Code, r.Stderr)
	}
}

// Item 3: enter holds the session between its commands; another client's
// enter is refused, enter --force takes it over and the first is told.
func TestEnterHoldsAndForceTakesOver(t *testing.T) {
	a, ca := setup(t)
	cb := ca.WithKey()
	addr := strings.TrimSpace(ca.MustRun("new", "--name", "held", a.Host()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := ca.Command(ctx, "enter", addr)
	in, _ := cmd.StdinPipe()
	var out, errb SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "echo ready\n")
	WaitFor(t, 15*time.Second, "enter to run a command", func() bool { return out.String() == "ready\n" })
	if r := cb.RunIn(strings.NewReader("echo b\n"), "enter", addr); r.Code != 255 || !strings.Contains(r.Stderr, "in tether enter on") || !strings.Contains(r.Stderr, "--force") {
		t.Fatalf("enter into a session in another client's enter: %d %q", r.Code, r.Stderr)
	}
	if r := cb.RunIn(strings.NewReader("echo b-took-it\n"), "enter", "--force", addr); r.Code != 0 || r.Stdout != "b-took-it\n" {
		t.Fatalf("enter --force: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	io.WriteString(in, "echo a-again\n")
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 255 || !strings.Contains(errb.String(), "taken over") || strings.Contains(out.String(), "a-again") {
		t.Fatalf("A after the takeover: exit %d stdout %q stderr %q", code, out.String(), errb.String())
	}
}
