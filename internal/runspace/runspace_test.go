package runspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/tstest"
)

func newRunspace(t testing.TB, opts Options) *Runspace {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs script with buffers as output and fails the test on an internal
// error.
func run(t testing.TB, r *Runspace, script string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := r.Run(context.Background(), script, Streams{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Run(%q): internal error %v", script, err)
	}
	return code, out.String(), errb.String()
}

type step struct {
	script string
	code   int
	out    string
	errSub string // substring expected in stderr, "" for none
}

func runSteps(t *testing.T, r *Runspace, steps []step) {
	t.Helper()
	for _, s := range steps {
		code, out, errs := run(t, r, s.script)
		if code != s.code || out != s.out {
			t.Errorf("%q: got (%d, %q), want (%d, %q); stderr %q", s.script, code, out, s.code, s.out, errs)
		}
		if s.errSub == "" && errs != "" || !strings.Contains(errs, s.errSub) {
			t.Errorf("%q: stderr %q, want it to contain %q", s.script, errs, s.errSub)
		}
	}
}

func TestStatePersists(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRunspace(t, Options{Dir: dir, Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}})
	runSteps(t, r, []step{
		{script: "x=hello; arr=(a 'b c')", code: 0},
		{script: "echo $x ${arr[1]}", out: "hello b c\n"},
		{script: "greet() { echo \"hi $1\"; return 3; }"},
		{script: "greet bob", code: 3, out: "hi bob\n"},
		{script: "echo $?", out: "3\n"},
		{script: "alias ll='echo listed'"},
		{script: "ll now", out: "listed now\n"},
		{script: "cd sub"},
		{script: "pwd", out: sub + "\n"},
		{script: "export Y=exported; Z=notexported"},
		{script: "sh -c 'echo $Y-$Z'", out: "exported-\n"},
		{script: "set -o pipefail"},
		{script: "false | true", code: 1},
		{script: "set -o | grep -w pipefail", out: "pipefail\ton\n"},
		{script: "set +o pipefail; shopt -s extglob"},
		{script: "shopt extglob", out: "extglob\ton\n"},
		{script: "umask 027"},
		{script: "umask; sh -c umask", out: "0027\n0027\n"},
		{script: "unset x; echo ${x-unset}", out: "unset\n"},
		{script: "greet() { echo redefined; }; greet", out: "redefined\n"},
	})
	if got, _ := r.Dir(); got != sub {
		t.Errorf("Dir() = %q, want %q", got, sub)
	}
}

func TestExitKeepsState(t *testing.T) {
	r := newRunspace(t, Options{})
	runSteps(t, r, []step{
		{script: "v=kept; exit 7; echo not reached", code: 7},
		{script: "echo $v $?", out: "kept 7\n"},
		{script: "f() { exit 4; }; f; echo not reached", code: 4},
		{script: "(exit 5); echo sub $?", out: "sub 5\n"},
		{script: "exit", code: 0},
		{script: "exit 300", code: 44},
		{script: "set -e; false; echo not reached", code: 1},
		{script: "echo still here; set +e", out: "still here\n"},
		{script: "set -u; echo $undefined_var; echo not reached", code: 1, errSub: "undefined_var"},
		{script: "set +u; echo ok", out: "ok\n"},
	})
}

func TestSyntaxError(t *testing.T) {
	r := newRunspace(t, Options{})
	runSteps(t, r, []step{
		{script: "v=1", code: 0},
		{script: "echo (", code: 2, errSub: "tether: syntax error: 1:1:"},
		{script: "echo ok\nif then fi\nv=2", code: 2, errSub: "tether: syntax error: 2:"},
		{script: "echo $v", out: "1\n"}, // nothing of the bad script ran
	})
}

func TestExitStatuses(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noexec"), []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "noshebang"), []byte("echo from script $1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "badinterp"), []byte("#!/nonexistent/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRunspace(t, Options{Dir: dir})
	runSteps(t, r, []step{
		{script: "no-such-command-xyz", code: 127, errSub: "bash: line 1: no-such-command-xyz: command not found"},
		{script: "./missing", code: 127, errSub: "bash: line 1: ./missing: No such file or directory"},
		{script: "/", code: 126, errSub: "bash: line 1: /: Is a directory"},
		{script: "./noexec", code: 126, errSub: "bash: line 1: ./noexec: Permission denied"},
		{script: "./badinterp", code: 126, errSub: "bad interpreter"},
		{script: "./noshebang arg", out: "from script arg\n"},
		{script: "sh -c 'exit 9'", code: 9},
		{script: "sh -c 'kill -TERM $$'", code: 143},
		{script: "/bin/false", code: 1},
	})
}

func TestStdin(t *testing.T) {
	r := newRunspace(t, Options{})
	var out bytes.Buffer
	code, err := r.Run(context.Background(), "cat; echo done", Streams{Stdin: strings.NewReader("line1\nline2\n"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "line1\nline2\ndone\n" {
		t.Fatalf("reader stdin: %d %v %q", code, err, out.String())
	}
	// An *os.File is handed to the child as it is, and builtins read it too.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		io.WriteString(pw, "first\nrest\n")
		pw.Close()
	}()
	out.Reset()
	code, err = r.Run(context.Background(), "read a; echo got $a; cat", Streams{Stdin: pr, Stdout: &out})
	pr.Close()
	if err != nil || code != 0 || out.String() != "got first\nrest\n" {
		t.Fatalf("file stdin: %d %v %q", code, err, out.String())
	}
	// No stdin reads as empty.
	out.Reset()
	code, err = r.Run(context.Background(), "cat; echo eof", Streams{Stdout: &out})
	if err != nil || code != 0 || out.String() != "eof\n" {
		t.Fatalf("nil stdin: %d %v %q", code, err, out.String())
	}
}

func TestBinarySafe(t *testing.T) {
	r := newRunspace(t, Options{})
	var all []byte
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = bytes.Repeat(all, 64)
	for _, script := range []string{"cat", "cat | cat", "cat 2>&1"} {
		var out bytes.Buffer
		code, err := r.Run(context.Background(), script, Streams{Stdin: bytes.NewReader(all), Stdout: &out, Stderr: &out})
		if err != nil || code != 0 || !bytes.Equal(out.Bytes(), all) {
			t.Errorf("%q: code %d err %v, %d bytes out, equal=%v", script, code, err, out.Len(), bytes.Equal(out.Bytes(), all))
		}
	}
}

type countingWriter struct{ n atomic.Int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

func TestLargeOutput(t *testing.T) {
	r := newRunspace(t, Options{})
	const size = 50 << 20
	for _, script := range []string{
		fmt.Sprintf("head -c %d /dev/zero", size),
		fmt.Sprintf("head -c %d /dev/zero | cat", size),
	} {
		var w countingWriter
		code, err := r.Run(context.Background(), script, Streams{Stdout: &w})
		if err != nil || code != 0 || w.n.Load() != size {
			t.Errorf("%q: code %d err %v, got %d bytes", script, code, err, w.n.Load())
		}
	}
}

// startRun runs script in the background and returns a channel with its
// exit status.
func startRun(t *testing.T, r *Runspace, ctx context.Context, script string) <-chan int {
	t.Helper()
	done := make(chan int, 1)
	go func() {
		code, err := r.Run(ctx, script, Streams{})
		if err != nil {
			t.Errorf("Run(%q): %v", script, err)
		}
		done <- code
	}()
	tstest.WaitFor(t, 5*time.Second, "command to start", r.Busy)
	return done
}

func waitCode(t *testing.T, done <-chan int, within time.Duration) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(within):
		t.Fatalf("Run did not return within %v", within)
		return -1
	}
}

func TestInterrupt(t *testing.T) {
	tests := []struct {
		script   string
		external bool // wait for a process group before interrupting
	}{
		{"sleep 100", true},
		{"while true; do :; done", false},
		{"sleep 100 | cat", true},
		{"cat | sleep 100 | cat", true},
		{"for i in 1 2 3; do sleep 100; done; echo not reached", true},
		{"f() { sleep 100; }; f", true},
		{"read line", false}, // a builtin blocked on stdin (an *os.File pipe)
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			r := newRunspace(t, Options{})
			run(t, r, "v=survives")
			// A pipe as stdin that never gets data: `cat` and `read` block.
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			done := make(chan int, 1)
			go func() {
				code, err := r.Run(context.Background(), tt.script, Streams{Stdin: pr})
				if err != nil {
					t.Error(err)
				}
				done <- code
			}()
			tstest.WaitFor(t, 5*time.Second, "command to start", r.Busy)
			if r.Current() != tt.script {
				t.Errorf("Current() = %q", r.Current())
			}
			if tt.external {
				tstest.WaitFor(t, 5*time.Second, "a process group", func() bool { return len(r.Pgids()) > 0 })
				for _, pg := range r.Pgids() {
					if pg == syscall.Getpgrp() {
						t.Errorf("child runs in the host's process group %d", pg)
					}
				}
			}
			start := time.Now()
			r.Interrupt()
			if code := waitCode(t, done, time.Second); code != 130 {
				t.Errorf("exit code %d, want 130", code)
			}
			t.Logf("returned %v after Interrupt", time.Since(start))
			if r.Busy() || r.Current() != "" || r.Pgids() != nil {
				t.Errorf("still busy after Run returned")
			}
			if code, out, _ := run(t, r, "echo $v"); code != 0 || out != "survives\n" {
				t.Errorf("after interrupt: %d %q", code, out)
			}
		})
	}
}

func TestInterruptIdleIsNoop(t *testing.T) {
	r := newRunspace(t, Options{})
	r.Interrupt()
	r.Signal(syscall.SIGTERM)
	if code, out, _ := run(t, r, "echo ok"); code != 0 || out != "ok\n" {
		t.Fatalf("%d %q", code, out)
	}
}

func TestInterruptEscalatesToKill(t *testing.T) {
	const grace = 300 * time.Millisecond
	r := newRunspace(t, Options{KillGrace: grace})
	done := startRun(t, r, context.Background(), `sh -c "trap '' INT; sleep 100"`)
	tstest.WaitFor(t, 5*time.Second, "a process group", func() bool { return len(r.Pgids()) > 0 })
	// Let sh install its trap before interrupting.
	tstest.WaitFor(t, 5*time.Second, "sleep to start", func() bool {
		out, _ := exec.Command("pgrep", "-g", strconv.Itoa(r.Pgids()[0]), "sleep").Output()
		return len(out) > 0
	})
	start := time.Now()
	r.Interrupt()
	code := waitCode(t, done, grace+2*time.Second)
	if elapsed := time.Since(start); elapsed < grace {
		t.Errorf("returned after %v, before the grace period", elapsed)
	}
	if code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", code, 128+int(syscall.SIGKILL))
	}
}

func TestContextCancelInterrupts(t *testing.T) {
	r := newRunspace(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(t, r, ctx, "sleep 100")
	tstest.WaitFor(t, 5*time.Second, "a process group", func() bool { return len(r.Pgids()) > 0 })
	cancel()
	if code := waitCode(t, done, time.Second); code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
}

func TestSignal(t *testing.T) {
	r := newRunspace(t, Options{})
	done := startRun(t, r, context.Background(), "sleep 100 | sleep 100")
	tstest.WaitFor(t, 5*time.Second, "both processes", func() bool {
		pg := r.Pgids()
		if len(pg) != 1 {
			return false
		}
		out, _ := exec.Command("pgrep", "-g", strconv.Itoa(pg[0])).Output()
		return strings.Count(string(out), "\n") == 2
	})
	r.Signal(syscall.SIGTERM)
	if code := waitCode(t, done, 2*time.Second); code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
}

func TestProcessGroups(t *testing.T) {
	r := newRunspace(t, Options{})
	// Field 5 of /proc/self/stat is the process group.
	code, out, errs := run(t, r, "cut -d' ' -f5 /proc/self/stat | cat; cut -d' ' -f5 /proc/self/stat")
	if code != 0 {
		t.Fatalf("%d %q", code, errs)
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("output %q", out)
	}
	for _, pg := range f {
		if pg == strconv.Itoa(syscall.Getpgrp()) {
			t.Errorf("child in the host's process group: %q", out)
		}
	}
	// Within a pipeline, all processes share one group: the group of
	// the first (here, sleep is the leader while cut runs).
	code, out, _ = run(t, r, "sleep 0.2 | cut -d' ' -f5 /proc/self/stat; sh -c 'cut -d\" \" -f5 /proc/$$/stat; cut -d\" \" -f1 /proc/$$/stat'")
	f = strings.Fields(out)
	if code != 0 || len(f) != 3 {
		t.Fatalf("%d %q", code, out)
	}
	if f[1] != f[2] {
		t.Errorf("a later command of the same script should lead a new group once the old leader is gone: %q", out)
	}
}

func TestHooks(t *testing.T) {
	var mu sync.Mutex
	var pids []int
	var sawPgid bool
	r := newRunspace(t, Options{
		BeforeStart: func(cmd *exec.Cmd) {
			mu.Lock()
			defer mu.Unlock()
			sawPgid = cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid
			cmd.Env = append(cmd.Env, "FROM_HOOK=1")
		},
		AfterStart: func(pid int) error {
			mu.Lock()
			defer mu.Unlock()
			pids = append(pids, pid)
			return nil
		},
	})
	code, out, _ := run(t, r, "sh -c 'echo $FROM_HOOK $$'")
	mu.Lock()
	defer mu.Unlock()
	if code != 0 || !sawPgid || len(pids) != 1 || out != fmt.Sprintf("1 %d\n", pids[0]) {
		t.Errorf("code %d out %q pids %v sawPgid %v", code, out, pids, sawPgid)
	}
}

func TestAfterStartErrorKills(t *testing.T) {
	boom := errors.New("cgroup move failed")
	var pid atomic.Int64
	r := newRunspace(t, Options{AfterStart: func(p int) error {
		pid.Store(int64(p))
		return boom
	}})
	start := time.Now()
	code, out, errs := run(t, r, "sleep 100; echo next $?")
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if code != 0 || out != "next 1\n" || !strings.Contains(errs, "tether: sleep: cgroup move failed") {
		t.Errorf("code %d out %q stderr %q", code, out, errs)
	}
	if err := syscall.Kill(int(pid.Load()), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists: %v", pid.Load(), err)
	}
}

func TestIsComplete(t *testing.T) {
	tests := []struct {
		in       string
		complete bool
		err      bool
	}{
		{"echo hi", true, false},
		{"", true, false},
		{"echo hi\n", true, false},
		{"if true; then", false, false},
		{"if true; then\necho a\nfi", true, false},
		{"for x in 1 2; do", false, false},
		{"while true; do", false, false},
		{"case $x in", false, false},
		{"case $x in a) echo;; esac", true, false},
		{"f() {", false, false},
		{"echo 'open", false, false},
		{`echo "open`, false, false},
		{"echo $(ls", false, false},
		{"echo ${x", false, false},
		{"echo a \\", false, false},
		{"echo a \\\\", true, false},
		{"echo a |", false, false},
		{"echo a &&", false, false},
		{"echo a ||", false, false},
		{"cat <<EOF\nbody", false, false},
		{"cat <<EOF\nbody\nEOF", true, false},
		{"echo )", true, true},
		{"fi", true, true},
	}
	for _, tt := range tests {
		complete, err := IsComplete(tt.in)
		if complete != tt.complete || (err != nil) != tt.err {
			t.Errorf("IsComplete(%q) = %v, %v; want %v, err %v", tt.in, complete, err, tt.complete, tt.err)
		}
	}
}

func TestBackgroundJobs(t *testing.T) {
	r := newRunspace(t, Options{})
	runSteps(t, r, []step{
		{script: "sh -c 'exit 3' & wait $!; echo $?", out: "3\n"},
		{script: "(sleep 0.05; echo bg) & echo fg; wait", out: "fg\nbg\n"},
	})
}

func TestManyRunspaces(t *testing.T) {
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			dir := t.TempDir()
			r, err := New(Options{Dir: dir})
			if err != nil {
				errs <- err
				return
			}
			mask := fmt.Sprintf("%04o", i%8*0o10+2)
			steps := []struct{ script, want string }{
				{fmt.Sprintf("id=%d; f() { echo fn$id; }; mkdir d%d; cd d%d; export E=%d; umask %s", i, i, i, i, mask), ""},
				{"echo $id; f; sh -c 'echo $E; umask'; pwd", fmt.Sprintf("%d\nfn%d\n%d\n%s\n%s/d%d\n", i, i, i, mask, dir, i)},
			}
			for _, s := range steps {
				var out, e bytes.Buffer
				code, err := r.Run(context.Background(), s.script, Streams{Stdout: &out, Stderr: &e})
				if err != nil || code != 0 || out.String() != s.want {
					errs <- fmt.Errorf("runspace %d: %q: %d %v %q %q", i, s.script, code, err, out.String(), e.String())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkRunBuiltin(b *testing.B) {
	r := newRunspace(b, Options{})
	ctx := context.Background()
	for b.Loop() {
		if code, err := r.Run(ctx, "true", Streams{}); code != 0 || err != nil {
			b.Fatal(code, err)
		}
	}
}

func BenchmarkRunExternal(b *testing.B) {
	r := newRunspace(b, Options{})
	ctx := context.Background()
	for b.Loop() {
		if code, err := r.Run(ctx, "/bin/true", Streams{}); code != 0 || err != nil {
			b.Fatal(code, err)
		}
	}
}

func TestFileStreams(t *testing.T) {
	r := newRunspace(t, Options{})
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code, err := r.Run(context.Background(), "echo builtin; /bin/echo external; ls /nonexistent-xyz", Streams{Stdout: f, Stderr: f})
	if err != nil || code != 2 {
		t.Fatalf("%d %v", code, err)
	}
	b, _ := os.ReadFile(f.Name())
	if !strings.HasPrefix(string(b), "builtin\nexternal\nls: ") {
		t.Errorf("file got %q", b)
	}
}

func TestConcurrentRunRefused(t *testing.T) {
	r := newRunspace(t, Options{})
	done := startRun(t, r, context.Background(), "sleep 100")
	if _, err := r.Run(context.Background(), "true", Streams{}); err == nil {
		t.Error("concurrent Run succeeded")
	}
	r.Interrupt()
	if code := waitCode(t, done, time.Second); code != 130 {
		t.Errorf("exit code %d", code)
	}
}

// No stdin reads as empty, for builtins and programs alike, as </dev/null.
func TestNilStdinIsEmpty(t *testing.T) {
	r := newRunspace(t, Options{})
	for range 3 {
		var out bytes.Buffer
		code, err := r.Run(context.Background(), `read x; echo "read=$? x=$x"; cat; wc -c`, Streams{Stdout: &out, Stderr: &out})
		if err != nil || code != 0 || out.String() != "read=1 x=\n0\n" {
			t.Fatalf("exit %d err %v output %q", code, err, out.String())
		}
	}
}
