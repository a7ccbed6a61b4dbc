package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

// tmuxTerm is a terminal for `tether enter`: a tmux server of its own
// running the client in one pane.
type tmuxTerm struct {
	t    *testing.T
	sock string
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// enterInTmux starts `tether enter args...` for client c in a new tmux
// server of cols x rows. When the client exits, the pane shows
// "TETHER-EXIT=<status>" and stays.
func enterInTmux(t *testing.T, c *Client, cols, rows int, args ...string) *tmuxTerm {
	t.Helper()
	return cliInTmux(t, c, cols, rows, append([]string{"enter"}, args...)...)
}

// cliInTmux runs `tether args...` for client c on a terminal: a new tmux
// server of cols x rows. When the client exits, the pane shows
// "TETHER-EXIT=<status>" and stays.
func cliInTmux(t *testing.T, c *Client, cols, rows int, args ...string) *tmuxTerm {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	b := make([]byte, 6)
	rand.Read(b)
	tt := &tmuxTerm{t: t, sock: "tether-e2e-" + hex.EncodeToString(b)}
	var cmd strings.Builder
	cmd.WriteString("env")
	for _, kv := range append([]string{"HOME=" + c.Home, "USER=" + c.User, "PATH=" + os.Getenv("PATH"), "SSH_AUTH_SOCK="}, c.Env...) {
		cmd.WriteString(" " + shellQuote(kv))
	}
	cmd.WriteString(" " + shellQuote(Binary(t)) + " -i " + shellQuote(c.Key))
	for _, a := range args {
		cmd.WriteString(" " + shellQuote(a))
	}
	cmd.WriteString(`; echo "TETHER-EXIT=$?"; sleep 600`)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screen at the end:\n%s", tt.screen())
		}
		exec.Command("tmux", "-L", tt.sock, "kill-server").Run()
	})
	tt.tmux("-f", "/dev/null", "new-session", "-d", "-x", itoa(cols), "-y", itoa(rows), cmd.String())
	return tt
}

func itoa(n int) string { return strconv.Itoa(n) }

func (tt *tmuxTerm) tmux(args ...string) string {
	tt.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tt.sock}, args...)...).CombinedOutput()
	if err != nil {
		tt.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the visible pane, trailing blank lines removed.
func (tt *tmuxTerm) screen() string {
	out, err := exec.Command("tmux", "-L", tt.sock, "capture-pane", "-p").Output()
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(out), "\n ")
}

// lines is the screen as lines without trailing spaces.
func (tt *tmuxTerm) lines() []string {
	ls := strings.Split(tt.screen(), "\n")
	for i, l := range ls {
		ls[i] = strings.TrimRight(l, " ")
	}
	return ls
}

// typeLine types text literally and presses Enter.
func (tt *tmuxTerm) typeLine(text string) {
	tt.t.Helper()
	if text != "" {
		tt.tmux("send-keys", "-l", text)
	}
	tt.tmux("send-keys", "Enter")
}

func (tt *tmuxTerm) keys(keys ...string) {
	tt.t.Helper()
	tt.tmux(append([]string{"send-keys"}, keys...)...)
}

// waitFor polls the screen until cond holds, failing after 15 s with the
// last screen in the log.
func (tt *tmuxTerm) waitFor(what string, cond func(screen string) bool) {
	tt.t.Helper()
	var s string
	done := false
	defer func() { // runs too when WaitFor fails the test (Fatalf exits through defers)
		if !done {
			tt.t.Logf("last screen:\n%s", s)
		}
	}()
	tstest.WaitFor(tt.t, 15*time.Second, what, func() bool { s = tt.screen(); return cond(s) })
	done = true
}

// waitLine waits for a screen line equal to line.
func (tt *tmuxTerm) waitLine(line string) {
	tt.t.Helper()
	tt.waitFor("a line "+line, func(string) bool { return tt.hasLine(line) })
}

func (tt *tmuxTerm) hasLine(line string) bool {
	for _, l := range tt.lines() {
		if l == line {
			return true
		}
	}
	return false
}

// countLines counts the screen lines equal to line.
func (tt *tmuxTerm) countLines(line string) int {
	n := 0
	for _, l := range tt.lines() {
		if l == line {
			n++
		}
	}
	return n
}

// waitPrompt waits until the last line of the screen is an empty prompt
// ending in "]$", and returns it.
func (tt *tmuxTerm) waitPrompt() string {
	tt.t.Helper()
	var last string
	tt.waitFor("the prompt", func(string) bool {
		ls := tt.lines()
		last = ls[len(ls)-1]
		return strings.HasPrefix(last, "[") && strings.HasSuffix(last, "]$")
	})
	return last
}

// prompts counts the prompt lines on the screen.
func (tt *tmuxTerm) prompts() int {
	n := 0
	for _, l := range tt.lines() {
		if strings.HasPrefix(l, "[") && strings.Contains(l, "]$") {
			n++
		}
	}
	return n
}

// typeCommand types a command at the prompt and waits for the next prompt.
func (tt *tmuxTerm) typeCommand(cmd string) {
	tt.t.Helper()
	before := tt.prompts()
	tt.typeLine(cmd)
	tt.waitFor("the prompt after "+cmd, func(string) bool {
		ls := tt.lines()
		last := ls[len(ls)-1]
		return tt.prompts() > before && strings.HasPrefix(last, "[") && strings.HasSuffix(last, "]$")
	})
}

func TestEnterInteractiveSharesStateWithInvoke(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "work", a.Host()))
	c.MustRun("invoke", addr, "fromInvoke=42")
	dir := ShortTempDir(t)

	tt := enterInTmux(t, c, 120, 30, addr)
	p := tt.waitPrompt()
	if want := "[" + c.User + "@" + a.Host() + "/work "; !strings.HasPrefix(p, want) {
		t.Fatalf("prompt %q, want it to start with %q", p, want)
	}
	tt.typeCommand(`echo "got $fromInvoke"`)
	if !tt.hasLine("got 42") {
		t.Fatalf("a variable set by invoke is not seen in enter:\n%s", tt.screen())
	}
	tt.typeCommand("greeting=hello")
	tt.typeCommand("cd " + dir)
	if p := tt.waitPrompt(); !strings.HasSuffix(p, " "+dir+"]$") {
		t.Fatalf("prompt after cd is %q, want the directory %s", p, dir)
	}
	// A multi-line construct continues with "> " until it is complete.
	tt.typeLine("for i in 1 2 3; do")
	tt.waitFor("the continuation prompt", func(string) bool {
		ls := tt.lines()
		return ls[len(ls)-1] == ">"
	})
	tt.typeLine(`echo "n$i-$greeting"`)
	tt.typeCommand("done")
	for _, l := range []string{"n1-hello", "n2-hello", "n3-hello"} {
		if tt.countLines(l) != 1 {
			t.Fatalf("loop output %q not there once:\n%s", l, tt.screen())
		}
	}
	// Ctrl-D in a continuation line drops the unfinished construct.
	tt.typeLine("if true; then")
	tt.waitFor("the continuation prompt", func(string) bool {
		ls := tt.lines()
		return ls[len(ls)-1] == ">"
	})
	tt.keys("C-d")
	tt.waitPrompt()
	// $? survives the prompt's directory query.
	tt.typeCommand("(exit 7)")
	tt.typeCommand(`echo "status=$?"`)
	if !tt.hasLine("status=7") {
		t.Fatalf("$? was not kept:\n%s", tt.screen())
	}
	tt.typeLine("exit")
	tt.waitLine("session " + addr + " is still open; come back with: tether enter " + addr)
	tt.waitLine("TETHER-EXIT=0")

	out := c.MustRun("invoke", addr, `echo "$greeting"; pwd`)
	if out != "hello\n"+dir+"\n" {
		t.Fatalf("invoke after enter: %q, want the variable and directory set in enter", out)
	}
	// The history was kept for the session.
	hist, err := os.ReadFile(filepath.Join(c.Home, ".config", "tether", "history", c.User+"@"+a.Host()+"_work"))
	if err != nil || !bytes.Contains(hist, []byte("greeting=hello\n")) {
		t.Fatalf("history file: %v\n%s", err, hist)
	}
}

func TestEnterBareHostIsTemporary(t *testing.T) {
	a, c := setup(t)
	c.MustRun("invoke", a.Host(), "true") // known_hosts
	tt := enterInTmux(t, c, 100, 30, a.Host())
	p := tt.waitPrompt()
	if want := "[" + c.User + "@" + a.Host() + " "; !strings.HasPrefix(p, want) {
		t.Fatalf("prompt %q, want it to start with %q", p, want)
	}
	tt.typeCommand("echo in-temporary")
	if out := c.MustRun("list", a.Host()); !strings.Contains(out, "Opened") {
		t.Fatalf("no session while enter runs:\n%s", out)
	}
	tt.keys("C-d")
	tt.waitLine("temporary session closed")
	tt.waitLine("TETHER-EXIT=0")
	if out := c.MustRun("list", a.Host()); strings.Contains(out, "Opened") {
		t.Fatalf("temporary session left open:\n%s", out)
	}
}

func TestEnterFullScreenProgramsAndResize(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "tty", a.Host()))
	dir := ShortTempDir(t)
	file := filepath.Join(dir, "notes.txt")

	tt := enterInTmux(t, c, 100, 30, addr)
	tt.waitPrompt()

	// vi on the remote pseudo-terminal.
	if _, err := exec.LookPath("vi"); err != nil {
		t.Skip("vi is not installed")
	}
	tt.typeLine("vi " + file)
	tt.waitFor("vi's empty buffer", func(s string) bool { return strings.Count(s, "\n~") >= 5 })
	tt.keys("i")
	tt.tmux("send-keys", "-l", "typed in vi")
	tt.keys("Escape")
	tt.typeLine(":wq")
	tt.waitFor("vi to save and quit", func(string) bool {
		b, _ := os.ReadFile(file)
		return string(b) == "typed in vi\n"
	})
	tt.waitPrompt()

	// top draws its screen and quits on q.
	if _, err := exec.LookPath("top"); err == nil {
		tt.typeLine("top")
		tt.waitFor("top's header", func(s string) bool { return strings.Contains(s, "load average") })
		before := tt.prompts()
		tt.keys("q")
		tt.waitFor("the prompt after top", func(string) bool {
			ls := tt.lines()
			last := ls[len(ls)-1]
			return tt.prompts() >= before && strings.HasPrefix(last, "[") && strings.HasSuffix(last, "]$")
		})
	}

	tt.typeLine("clear; stty size")
	tt.waitLine("30 100")
	tt.waitPrompt()
	// A resize between commands.
	tt.tmux("resize-window", "-x", "120", "-y", "40")
	tt.typeLine("clear; stty size")
	tt.waitLine("40 120")
	tt.waitPrompt()
	// A resize while a command runs reaches it as SIGWINCH.
	tt.typeLine(`clear; sh -c 'trap "stty size; exit" WINCH; echo ready; while :; do sleep 0.05; done'`)
	tt.waitLine("ready")
	tt.tmux("resize-window", "-x", "111", "-y", "33")
	tt.waitLine("33 111")
	tt.waitPrompt()
	tt.typeLine("exit")
	tt.waitLine("TETHER-EXIT=0")
}

// sleeping reports whether a process runs `sleep arg`.
func sleeping(arg string) bool {
	want := []byte("sleep\x00" + arg + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, want) {
			return true
		}
	}
	return false
}

func TestEnterCtrlCInterruptsTheCommandNotTheSession(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "intr", a.Host()))
	tt := enterInTmux(t, c, 100, 30, addr)
	tt.waitPrompt()
	tt.typeCommand("keep=yes")

	// Ctrl-C at the prompt only clears the line.
	tt.tmux("send-keys", "-l", "echo should-not-run")
	tt.waitFor("the typed line", func(s string) bool { return strings.Contains(s, "$ echo should-not-run") })
	before := tt.prompts()
	tt.keys("C-c")
	tt.waitFor("a new prompt", func(string) bool { return tt.prompts() > before })

	arg := "100.4242"
	// A program, then a loop of programs: Ctrl-C ends the loop too.
	for round, cmd := range []string{"sleep " + arg, "for i in 1 2 3; do sleep " + arg + "; done; echo not-abandoned"} {
		tt.typeLine(cmd)
		WaitFor(t, 15*time.Second, "sleep to start", func() bool { return sleeping(arg) })
		before := tt.prompts()
		start := time.Now()
		tt.keys("C-c")
		tt.waitFor("the prompt after Ctrl-C", func(string) bool {
			ls := tt.lines()
			last := ls[len(ls)-1]
			return tt.prompts() > before && strings.HasPrefix(last, "[") && strings.HasSuffix(last, "]$")
		})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("round %d: the prompt came back %s after Ctrl-C, want within 1s", round, d)
		}
		if sleeping(arg) {
			t.Fatalf("round %d: sleep still runs after Ctrl-C", round)
		}
	}
	// A builtin loop after a program has ended: nobody is in the
	// terminal's foreground, the session host interrupts it.
	tt.typeLine("sleep 0.4321; while :; do :; done")
	typed := time.Now()
	// The sleep is short: polling may miss it, so wait until it must be over.
	WaitFor(t, 15*time.Second, "sleep to end", func() bool {
		return time.Since(typed) > 700*time.Millisecond && !sleeping("0.4321")
	})
	before = tt.prompts()
	tt.keys("C-c")
	tt.waitFor("the prompt after Ctrl-C in a loop", func(string) bool { return tt.prompts() > before })
	tt.typeCommand(`echo "status=$?"`)
	if !tt.hasLine("status=130") {
		t.Fatalf("status after Ctrl-C in a loop:\n%s", tt.screen())
	}
	tt.typeCommand(`echo "keep=$keep"`)
	if !tt.hasLine("keep=yes") || tt.hasLine("should-not-run") || tt.hasLine("not-abandoned") {
		t.Fatalf("session state lost, or an interrupted line ran:\n%s", tt.screen())
	}
	tt.typeLine("exit")
	tt.waitLine("TETHER-EXIT=0")
	if out := c.MustRun("invoke", addr, `echo "$keep"`); out != "yes\n" {
		t.Fatalf("session after Ctrl-C: %q", out)
	}
}

func TestEnterScripted(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "script", a.Host()))
	r := c.RunIn(strings.NewReader("x=5\necho $((x*2))\n"), "enter", addr)
	if r.Code != 0 || r.Stdout != "10\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if out := c.MustRun("invoke", addr, "echo $x"); out != "5\n" {
		t.Fatalf("variable set by scripted enter: %q", out)
	}
	// Multi-line constructs, the last status, and no pseudo-terminal.
	r = c.RunIn(strings.NewReader("for i in 1 2; do\n  echo \"i$i\"\ndone\n[ -t 0 ] || echo no-tty\nfalse\n"), "enter", addr)
	if r.Code != 1 || r.Stdout != "i1\ni2\nno-tty\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// exit N leaves with N; a bare host's session is closed afterwards.
	r = c.RunIn(strings.NewReader("echo one\nexit 3\necho never\n"), "enter", a.Host())
	if r.Code != 3 || r.Stdout != "one\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if out := c.MustRun("list", a.Host()); strings.Count(out, "Opened") != 1 {
		t.Fatalf("the bare host's session was not closed:\n%s", out)
	}
}

func TestEnterSurvivesNetworkCut(t *testing.T) {
	a, c := setup(t)
	c.MustRun("new", "--name", "cut", a.Host())
	p, err := NewCutProxy(a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c.MustRun("invoke", p.Addr(), "true") // known_hosts under the proxy's address
	via := p.Addr() + "/cut"

	tt := enterInTmux(t, c, 100, 40, via)
	tt.waitPrompt()
	tt.typeLine(`for i in 1 2 3 4 5 6; do echo "line$i"; sleep 0.3; done; echo loop-done`)
	tt.waitLine("line2")
	if p.Cut() == 0 {
		t.Fatal("nothing to cut")
	}
	tt.waitLine("loop-done")
	tt.waitPrompt()
	for i := 1; i <= 6; i++ {
		if n := tt.countLines("line" + itoa(i)); n != 1 {
			t.Fatalf("line%d shown %d times after the cut:\n%s", i, n, tt.screen())
		}
	}
	// A cut at the prompt: the next command still runs.
	p.Cut()
	tt.typeCommand("echo after-cut")
	if !tt.hasLine("after-cut") {
		t.Fatalf("no output after a cut at the prompt:\n%s", tt.screen())
	}
	tt.typeLine("exit")
	tt.waitLine("TETHER-EXIT=0")
}
