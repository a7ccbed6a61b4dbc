package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-sh/tether/internal/wire"
)

// setup starts one agent authorizing a fresh client's key.
func setup(t *testing.T) (*Agent, *Client) {
	t.Helper()
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	return a, c
}

func TestInvokeBareHostStreamsAndExitStatus(t *testing.T) {
	a, c := setup(t)
	r := c.Run("invoke", a.Host(), "echo hi; echo err >&2; exit 3")
	if r.Code != 3 || r.Stdout != "hi\n" || !strings.Contains(r.Stderr, "err\n") {
		t.Fatalf("got exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// The first contact recorded the host key and said so.
	if !strings.Contains(r.Stderr, "known hosts") {
		t.Errorf("first contact did not mention known hosts: %q", r.Stderr)
	}
	r = c.Run("invoke", a.Host(), "true")
	if r.Code != 0 || r.Stderr != "" {
		t.Fatalf("second contact: exit %d stderr %q", r.Code, r.Stderr)
	}
	// Arguments are joined like ssh does.
	if out := c.MustRun("invoke", a.Host(), "echo", "a", "b"); out != "a b\n" {
		t.Fatalf("joined args: %q", out)
	}
}

func TestSessionKeepsState(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "work", a.Host()))
	if addr != a.Host()+"/work" {
		t.Fatalf("new printed %q", addr)
	}
	c.MustRun("invoke", addr, `x=42; f(){ echo "f$1"; }; cd /tmp; export Y=7; alias ll='echo aliased'; set -o pipefail; umask 027`)
	out := c.MustRun("invoke", addr, `echo $x; f 1; pwd; sh -c 'echo $Y'; umask; [[ -o pipefail ]] && echo pipefail`)
	want := "42\nf1\n/tmp\n7\n0027\npipefail\n"
	if out != want {
		t.Fatalf("state not kept: got %q want %q", out, want)
	}
	// A name in use is an error.
	r := c.Run("new", "--name", "work", a.Host())
	if r.Code != 255 || !strings.Contains(r.Stderr, "already exists") {
		t.Fatalf("duplicate name: exit %d %q", r.Code, r.Stderr)
	}
	// list without a host uses the registry; with a host asks the host.
	for _, args := range [][]string{{"list"}, {"list", a.Host()}} {
		out := c.MustRun(args...)
		if !strings.Contains(out, "SESSION") || !strings.Contains(out, addr) || !strings.Contains(out, "Opened") || !strings.Contains(out, "Available") {
			t.Fatalf("%v:\n%s", args, out)
		}
	}
}

func TestBinaryExact50MB(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	data := make([]byte, 50_000_000)
	rand.Read(data)
	want := sha256.Sum256(data)

	// stdin -> cat -> stdout
	r := c.RunIn(bytes.NewReader(data), "invoke", addr, "cat")
	if r.Code != 0 {
		t.Fatalf("cat: exit %d: %s", r.Code, r.Stderr)
	}
	if got := sha256.Sum256([]byte(r.Stdout)); got != want || len(r.Stdout) != len(data) {
		t.Fatalf("cat returned %d bytes, hash differs", len(r.Stdout))
	}
	// 50 MB produced remotely arrives byte-exact.
	dir := ShortTempDir(t)
	in := filepath.Join(dir, "in")
	os.WriteFile(in, data, 0o644)
	r = c.Run("invoke", addr, "cat "+in)
	if got := sha256.Sum256([]byte(r.Stdout)); got != want {
		t.Fatalf("remote output: %d bytes, hash differs (exit %d %s)", len(r.Stdout), r.Code, r.Stderr)
	}
}

func TestFanOut(t *testing.T) {
	c := NewClient(t)
	var agents []*Agent
	for i := 0; i < 3; i++ {
		agents = append(agents, StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}}))
	}
	// A 4th address with nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	targets := []string{agents[0].Host(), agents[1].Host(), agents[2].Host(), dead}
	r := c.Run("invoke", "--throttle", "2", strings.Join(targets, ","), `echo line1; echo line2 >&2; exit 4`)
	if r.Code != 255 {
		t.Fatalf("exit %d, want 255 (the unreachable target)\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, a := range agents {
		if !strings.Contains(r.Stdout, a.Host()+": line1\n") || !strings.Contains(r.Stderr, a.Host()+": line2\n") {
			t.Fatalf("untagged or missing output for %s:\nstdout %s\nstderr %s", a.Host(), r.Stdout, r.Stderr)
		}
	}
	if !strings.Contains(r.Stderr, dead) || !strings.Contains(r.Stderr, "connection refused") {
		t.Fatalf("unreachable target not reported with its reason:\n%s", r.Stderr)
	}
	live := strings.Join(targets[:3], ",")
	if r := c.Run("invoke", live, "exit 4"); r.Code != 4 {
		t.Fatalf("three 4s: exit %d %s", r.Code, r.Stderr)
	}
	// --json: one object per line with the documented fields.
	r = c.Run("invoke", "--json", live, "echo hello")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[6], `{"summary":{"total":3,"succeeded":3,"failed":0,`) {
		t.Fatalf("json: want 3 output + 3 result records + a summary, got:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stdout, `"stream":"stdout"`) || !strings.Contains(r.Stdout, `"data":"hello"`) || !strings.Contains(r.Stdout, `"exit_code":0`) || !strings.Contains(r.Stdout, `"duration_ms"`) {
		t.Fatalf("json records:\n%s", r.Stdout)
	}
}

func TestFanOutLargestExit(t *testing.T) {
	c := NewClient(t)
	a1 := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	a2 := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	s1 := strings.TrimSpace(c.MustRun("new", "--name", "s", a1.Host()))
	s2 := strings.TrimSpace(c.MustRun("new", "--name", "s", a2.Host()))
	c.MustRun("invoke", s1, "code=3")
	c.MustRun("invoke", s2, "code=5")
	r := c.Run("invoke", s1+","+s2, `echo "code $code"; exit $code`)
	if r.Code != 5 || !strings.Contains(r.Stdout, s1+": code 3") || !strings.Contains(r.Stdout, s2+": code 5") {
		t.Fatalf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

func TestManySessions(t *testing.T) {
	if testing.Short() {
		t.Skip("200 sessions")
	}
	a, c := setup(t)
	const n = 200
	c.MustRun("config", "set", a.Host(), "MaxShellsPerUser", "250")
	var addrs []string
	// One `new` per session: a target list names each host once (a
	// repeated host is one target, as in pdsh).
	var mu sync.Mutex
	var opening sync.WaitGroup
	for w := 0; w < 8; w++ {
		opening.Add(1)
		go func() {
			defer opening.Done()
			for i := 0; i < n/8; i++ {
				r := c.Run("new", a.Host())
				mu.Lock()
				if r.Code != 0 {
					t.Errorf("new: exit %d: %s", r.Code, r.Stderr)
				}
				addrs = append(addrs, strings.Fields(r.Stdout)...)
				mu.Unlock()
			}
		}()
	}
	opening.Wait()
	if len(addrs) != n {
		t.Fatalf("opened %d sessions, want %d", len(addrs), n)
	}
	// Each session gets its own value, then reports it back.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if r := c.Run("invoke", addr, fmt.Sprintf("v=%d", i)); r.Code != 0 {
				errs <- fmt.Errorf("%s: %s", addr, r.Stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := c.Run("invoke", strings.Join(addrs, ","), "echo v=$v")
	if r.Code != 0 {
		t.Fatalf("fan-out over %d sessions: exit %d\n%s", n, r.Code, r.Stderr)
	}
	for i, addr := range addrs {
		if !strings.Contains(r.Stdout, fmt.Sprintf("%s: v=%d\n", addr, i)) {
			t.Fatalf("session %s lost its state", addr)
		}
	}
}

func TestInterruptKeepsSession(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	c.MustRun("invoke", addr, "keep=yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Command(ctx, "invoke", addr, "echo started; sleep 100; echo after")
	var out bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(&out, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	io.ReadAtLeast(pr, buf, len("started\n"))
	go io.Copy(io.Discard, pr)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	took := time.Since(start)
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 130 {
		t.Fatalf("after Ctrl-C: %v (want exit 130)", err)
	}
	if took > 5*time.Second {
		t.Fatalf("interrupt took %s", took)
	}
	if strings.Contains(out.String(), "after") {
		t.Fatal("the command went on after the interrupt")
	}
	if got := c.MustRun("invoke", addr, "echo $keep"); got != "yes\n" {
		t.Fatalf("session after interrupt: %q", got)
	}
}

func TestErrors(t *testing.T) {
	a, c := setup(t)
	// Unknown key: permission denied, 255.
	stranger := NewClient(t)
	r := stranger.Run("invoke", a.Host(), "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("unknown key: exit %d %q", r.Code, r.Stderr)
	}
	// Removed and unknown sessions.
	addr := strings.TrimSpace(c.MustRun("new", "--name", "gone", a.Host()))
	c.MustRun("remove", addr)
	r = c.Run("invoke", addr, "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "Closed") || !strings.Contains(r.Stderr, "tether remove") {
		t.Fatalf("removed session: exit %d %q", r.Code, r.Stderr)
	}
	r = c.Run("invoke", a.Host()+"/never", "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "no session never") {
		t.Fatalf("unknown session: exit %d %q", r.Code, r.Stderr)
	}
	// Bad address.
	r = c.Run("invoke", "host:99999", "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "port") {
		t.Fatalf("bad address: exit %d %q", r.Code, r.Stderr)
	}
	// A changed host key is refused, naming the file and line.
	kh := filepath.Join(c.Home, ".config", "tether", "known_hosts")
	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	other := NewClient(t)
	otherPub, _ := os.ReadFile(other.PubKey())
	f := strings.Fields(string(b))
	k := strings.Fields(string(otherPub))
	os.WriteFile(kh, []byte(f[0]+" "+k[0]+" "+k[1]+"\n"), 0o600)
	r = c.Run("invoke", a.Host(), "true")
	if r.Code != 255 || !strings.Contains(r.Stderr, "changed") || !strings.Contains(r.Stderr, kh+":1") {
		t.Fatalf("changed host key: exit %d %q", r.Code, r.Stderr)
	}
}

// TestMakeRun runs `make run` as a newcomer would: a fresh HOME, nothing
// configured, then uses the session it opened.
func TestMakeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary with make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	home := ShortTempDir(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	gocache, _ := exec.Command("go", "env", "GOCACHE").Output()
	gomod, _ := exec.Command("go", "env", "GOMODCACHE").Output()
	cmd := exec.Command("make", "run")
	cmd.Dir = "../.."
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "USER=" + os.Getenv("USER"),
		"GOCACHE=" + strings.TrimSpace(string(gocache)), "GOMODCACHE=" + strings.TrimSpace(string(gomod)),
		"GOFLAGS=-buildvcs=false", "TETHER_RUN_ADDR=" + addr, "SSH_AUTH_SOCK="}
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		exec.Command("pkill", "-f", "tether serve --listen "+addr).Run()
		KillSessionHosts(filepath.Join(home, ".local", "state", "tether-dev"))
	})
	if err != nil {
		t.Fatalf("make run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "opened session 127.0.0.1:") || !strings.Contains(string(out), "hello from") {
		t.Fatalf("make run output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(home, ".ssh")); err == nil {
		t.Fatal("make run touched ~/.ssh")
	}
	// The printed session works with no flags: the Tether key is offered.
	var session string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, "opened session "); ok {
			session = s
		}
	}
	use := exec.Command("../../bin/tether", "invoke", session, "echo works")
	use.Env = cmd.Env
	if b, err := use.CombinedOutput(); err != nil || string(b) != "works\n" {
		t.Fatalf("using the session: %v %q", err, b)
	}
}

// TestOversizedMessage sends a frame over the size limit straight to the
// agent: it is refused, and the agent keeps serving.
func TestOversizedMessage(t *testing.T) {
	a, c := setup(t)
	key, _ := os.ReadFile(c.Key)
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ssh.Dial("tcp", a.Addr, &ssh.ClientConfig{User: c.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ch, reqs, err := cl.OpenChannel("tether@tether.sh", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	wc := wire.NewConn(ch, 0)
	if _, err := wc.Handshake(wire.Hello{}); err != nil {
		t.Fatal(err)
	}
	// A request frame announcing 64 MiB.
	ch.Write([]byte{0x04, 0, 0, 0, byte(wire.TRequest)})
	var resp wire.Response
	if err := wc.ReadJSON(wire.TResponse, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.OK || resp.Error == nil || !strings.Contains(resp.Error.Message, "size limit") {
		t.Fatalf("oversized request answered %+v", resp)
	}
	if out := c.MustRun("invoke", a.Host(), "echo still up"); out != "still up\n" {
		t.Fatalf("agent after: %q", out)
	}
}

// A client that acks a command's end and closes at once completed the
// delivery: the session must stay Opened, not turn Disconnected. The ack
// and the close race the session host's writer, so try many times.
func TestFinishedInvokeLeavesSessionOpened(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	for i := range 40 {
		c.MustRun("invoke", addr, "true")
		out := c.MustRun("list", a.Host())
		if !strings.Contains(out, "Opened") {
			t.Fatalf("after invoke %d the session is not Opened:\n%s", i+1, out)
		}
	}
}

// A command line that is not valid UTF-8 (a Latin-1 terminal, a binary
// argument) reaches the session byte for byte, where JSON would have
// replaced the bytes: the shell, which reads UTF-8 like mvdan/sh, refuses it
// with a hint rather than running something else; $'\xNN' carries any byte.
func TestCommandBytesSurvive(t *testing.T) {
	a, c := setup(t)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	for _, target := range []string{addr, a.Host()} {
		r := c.Run("invoke", target, "printf %s '\xe9t\xe9 \xff' | od -An -tx1")
		if BuiltinShell() {
			if r.Code != 2 || !strings.Contains(r.Stderr, "invalid UTF-8") || !strings.Contains(r.Stderr, `$'\xNN'`) {
				t.Fatalf("%s: raw bytes: exit %d stderr %q", target, r.Code, r.Stderr)
			}
		} else if got := strings.Join(strings.Fields(r.Stdout), " "); r.Code != 0 || got != "e9 74 e9 20 ff" {
			// bash takes the bytes as they are.
			t.Fatalf("%s: raw bytes in bash: exit %d stdout %q stderr %q", target, r.Code, r.Stdout, r.Stderr)
		}
		out := c.MustRun("invoke", target, `printf %s $'\xe9t\xe9 \xff' | od -An -tx1`)
		if got := strings.Join(strings.Fields(out), " "); got != "e9 74 e9 20 ff" {
			t.Fatalf("%s: bytes arrived as %q", target, got)
		}
	}
}
