package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpUser is whom tether cp's sessions run as: tt-alice under a root agent
// (so that the files must come out hers, written by her session host), the
// test's own user under a user-mode agent otherwise.
func cpUser(t *testing.T, c *Client) (login, home string, uid int, opts AgentOptions) {
	t.Helper()
	if os.Geteuid() != 0 {
		u, _ := os.UserHomeDir()
		return c.User, u, os.Getuid(), AgentOptions{Keys: []string{c.PubKey()}}
	}
	ua := EnsureUser(t, "tt-alice")
	ua.Authorize(t, c.PubKey())
	return ua.Name, ua.Home, ua.UID, AgentOptions{AuthorizedKeys: "%h/.ssh/authorized_keys"}
}

// writeRandom writes n random bytes to p and returns their SHA-256.
func writeRandom(t testing.TB, p string, n int64) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, n); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileSHA(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// makeTree writes n small files over a few levels of directories, with
// varied modes, symlinks (relative, absolute, dangling) and an empty dir.
func makeTree(t testing.TB, root string, n int) {
	t.Helper()
	modes := []fs.FileMode{0o644, 0o600, 0o755, 0o640, 0o444}
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("e%d", i%3))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sz, _ := rand.Int(rand.Reader, big.NewInt(4096))
		p := filepath.Join(dir, fmt.Sprintf("f%04d.txt", i))
		writeRandom(t, p, sz.Int64())
		os.Chmod(p, modes[i%len(modes)])
	}
	os.MkdirAll(filepath.Join(root, "empty"), 0o700)
	os.Chmod(filepath.Join(root, "d01"), 0o750)
	os.Symlink("e0/f0000.txt", filepath.Join(root, "d00", "rel-link"))
	os.Symlink("/etc/hostname", filepath.Join(root, "abs-link"))
	os.Symlink("does/not/exist", filepath.Join(root, "dangling"))
}

// treeDigest lists a tree: each entry's path, type, mode, and content
// hash or link target; with times, each mtime too (seconds: SFTP's).
func treeDigest(t testing.TB, root string, times bool) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %s", rel, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			line += " " + fileSHA(t, p)
		}
		if times && fi.Mode()&fs.ModeSymlink == 0 && rel != "." {
			line += fmt.Sprintf(" @%d", fi.ModTime().Unix())
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func diffDigest(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("first difference at line %d:\n  %s\n  %s", i, al[i], bl[i])
		}
	}
	return fmt.Sprintf("%d lines vs %d", len(al), len(bl))
}

func ownedBy(t testing.TB, p string, uid int) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(fi.Sys().(*syscall.Stat_t).Uid); got != uid {
		t.Errorf("%s is owned by uid %d, want %d (the session's user)", p, got, uid)
	}
}

// TestCpRoundTrip: a 200 MB random file and a tree of 2,000 small files
// with symlinks and modes go to a session after `cd` into a subdirectory
// (relative paths land there) and come back, byte for byte; -p keeps
// times and modes; under a root agent the files are the session user's.
func TestCpRoundTrip(t *testing.T) {
	c := NewClient(t)
	login, home, uid, opts := cpUser(t, c)
	c.User = login
	a := StartAgent(t, opts)
	work := fmt.Sprintf("cpt-%d", time.Now().UnixNano())
	remoteDir := filepath.Join(home, work, "sub")
	t.Cleanup(func() { os.RemoveAll(filepath.Join(home, work)) })
	sess := a.Addr + "/cp"
	c.MustRun("new", "--name", "cp", a.Addr)
	c.MustRun("invoke", sess, "mkdir -p "+work+"/sub && cd "+work+"/sub")

	local := t.TempDir()
	big := filepath.Join(local, "big.bin")
	sum := writeRandom(t, big, 200<<20)
	tree := filepath.Join(local, "tree")
	makeTree(t, tree, 2000)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(tree, "d03", "e0", "f0003.txt"), old, old)
	os.Chtimes(filepath.Join(tree, "d03"), old, old)

	t.Run("push", func(t *testing.T) {
		c.MustRun("cp", big, sess+":big.bin")
		got := filepath.Join(remoteDir, "big.bin")
		if s := fileSHA(t, got); s != sum {
			t.Fatalf("pushed big.bin sha256 %s, want %s", s, sum)
		}
		ownedBy(t, got, uid)
		c.MustRun("cp", "-r", "-p", tree, sess+":.")
		if a, b := treeDigest(t, tree, true), treeDigest(t, filepath.Join(remoteDir, "tree"), true); a != b {
			t.Fatalf("pushed tree differs: %s", diffDigest(a, b))
		}
		ownedBy(t, filepath.Join(remoteDir, "tree", "d00", "e0", "f0000.txt"), uid)
		ownedBy(t, filepath.Join(remoteDir, "tree", "d00", "rel-link"), uid)
		ents, _ := os.ReadDir(remoteDir)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tether-") {
				t.Errorf("temp file %s left behind", e.Name())
			}
		}
	})
	t.Run("pull", func(t *testing.T) {
		back := t.TempDir()
		c.MustRun("cp", "-r", "-p", sess+":tree", sess+":big.bin", back)
		if s := fileSHA(t, filepath.Join(back, "big.bin")); s != sum {
			t.Fatalf("pulled big.bin sha256 %s, want %s", s, sum)
		}
		if a, b := treeDigest(t, tree, true), treeDigest(t, filepath.Join(back, "tree"), true); a != b {
			t.Fatalf("pulled tree differs: %s", diffDigest(a, b))
		}
		// Without -p: modes less umask 022, times of now.
		plain := filepath.Join(t.TempDir(), "plain.bin")
		c.MustRun("cp", sess+":tree/d03/e0/f0003.txt", plain)
		if fi, _ := os.Stat(plain); fi.ModTime().Equal(old) {
			t.Errorf("without -p the time was kept")
		}
	})
}

// countingProxy forwards to an agent, counts the bytes from clients, and
// cuts every connection once (a reset on both sides) when cutAt bytes
// have crossed.
type countingProxy struct {
	ln    net.Listener
	to    string
	cutAt int64
	pace  int64 // bytes per second from clients, 0: as fast as they come
	sent  atomic.Int64
	cuts  atomic.Int64
	mu    sync.Mutex
	conns []net.Conn
}

func newCountingProxy(t *testing.T, to string, cutAt, pace int64) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln, to: to, cutAt: cutAt, pace: pace}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go p.pipe(s, c, true)
			go p.pipe(c, s, false)
		}
	}()
	return p
}

func (p *countingProxy) pipe(dst, src net.Conn, count bool) {
	buf := make([]byte, 64<<10)
	start := time.Now()
	var total int64
	for {
		n, err := src.Read(buf)
		if count && p.pace > 0 && n > 0 {
			// Pace the upload: a slow link, not a wait for something.
			total += int64(n)
			if ahead := time.Duration(float64(total)/float64(p.pace)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
			if count && p.sent.Add(int64(n)) >= p.cutAt && p.cuts.CompareAndSwap(0, 1) {
				p.cut()
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (p *countingProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	p.conns = nil
}

// TestCpResumesAfterCut: the network is cut in the middle of a 200 MB push;
// cp reconnects to the same session and goes on from what had arrived
// (checked by SHA-256 on both sides): the file is byte-equal and fewer than
// 2x its size crossed the wire. The same for a pull.
func TestCpResumesAfterCut(t *testing.T) {
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	remote := t.TempDir()
	c.MustRun("new", "--name", "cut", a.Addr)
	c.MustRun("invoke", a.Addr+"/cut", "cd "+remote)
	local := t.TempDir()
	const size = 200 << 20
	sum := writeRandom(t, filepath.Join(local, "big.bin"), size)

	p := newCountingProxy(t, a.Addr, size/2, 0)
	// The proxy is another address for the same agent: trust its key too.
	c.MustRun("list", p.ln.Addr().String())
	r := c.Run("cp", "--json", filepath.Join(local, "big.bin"), p.ln.Addr().String()+"/cut:big.bin")
	if r.Code != 0 {
		t.Fatalf("cp across a cut: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if p.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d times, want 1 (sent %d bytes)", p.cuts.Load(), p.sent.Load())
	}
	if got := fileSHA(t, filepath.Join(remote, "big.bin")); got != sum {
		t.Fatalf("after the cut: sha256 %s, want %s", got, sum)
	}
	// The cut came at half the file: starting again from zero would send
	// 1.5x; resuming sends the file once plus what was in flight.
	if sent := p.sent.Load(); sent >= 2*size || sent > size*5/4 {
		t.Fatalf("%d bytes crossed the wire for a %d-byte file (%.2fx): it did not resume from what had arrived\n%s\n%s", sent, size, float64(sent)/size, r.Stdout, r.Stderr)
	} else {
		t.Logf("push: %d bytes crossed for %d (%.2fx); %s", sent, size, float64(sent)/size, strings.TrimSpace(r.Stderr))
	}
	if n := resumedBytes(t, r.Stdout); n < size/4 || !strings.Contains(r.Stderr, "reconnected") {
		t.Errorf("resumed_bytes %d, want at least a quarter of the file, and a reconnect notice\n%s\n%s", n, r.Stdout, r.Stderr)
	}

	// Pull: count what comes back (the proxy counts client->agent only, so
	// cut on the requests' side after the same share of the transfer).
	p2 := newCountingProxy(t, a.Addr, 1<<40, 0)
	c.MustRun("list", p2.ln.Addr().String())
	back := filepath.Join(t.TempDir(), "back.bin")
	done := make(chan Result, 1)
	go func() { done <- c.Run("cp", "--json", p2.ln.Addr().String()+"/cut:big.bin", back) }()
	// Cut once part of the file has arrived (its temp file grows).
	WaitFor(t, time.Minute, "the pull to be under way", func() bool {
		m, _ := filepath.Glob(filepath.Join(filepath.Dir(back), ".back.bin.tether-*"))
		if len(m) == 0 {
			return false
		}
		fi, err := os.Stat(m[0])
		return err == nil && fi.Size() > size/4
	})
	p2.cut()
	r = <-done
	if r.Code != 0 {
		t.Fatalf("pull across a cut: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := fileSHA(t, back); got != sum {
		t.Fatalf("pulled across a cut: sha256 %s, want %s", got, sum)
	}
	if n := resumedBytes(t, r.Stdout); n < size/4 || !strings.Contains(r.Stderr, "reconnected") {
		t.Errorf("pull: resumed_bytes %d, want at least a quarter of the file, and a reconnect notice\n%s\n%s", n, r.Stdout, r.Stderr)
	}
}

// resumedBytes is the resumed_bytes of the file records in cp --json output.
func resumedBytes(t *testing.T, out string) int64 {
	var n int64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct {
			Type    string `json:"type"`
			Resumed int64  `json:"resumed_bytes"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Type == "file" {
			n += rec.Resumed
		}
	}
	return n
}

// TestCpFanOut: one push to 20 sessions on 4 agents, each in its own cwd,
// then a pull from all of them into DEST/TARGET/....
func TestCpFanOut(t *testing.T) {
	c := NewClient(t)
	var exprs []string
	base := t.TempDir()
	for range 4 {
		a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
		for i := 1; i <= 5; i++ {
			c.MustRun("new", "--no-profile", "--name", fmt.Sprintf("c%d", i), a.Addr)
		}
		exprs = append(exprs, a.Addr+"/c[1-5]")
	}
	fleet := strings.Join(exprs, ",")
	c.MustRun("invoke", fleet, "cd \"$(mktemp -d "+base+"/s.XXXXXX)\"")
	local := t.TempDir()
	sum := writeRandom(t, filepath.Join(local, "app.bin"), 3<<20)
	r := c.Run("cp", filepath.Join(local, "app.bin"), fleet+":app.bin")
	if r.Code != 0 {
		t.Fatalf("push to 20: exit %d\n%s", r.Code, r.Stderr)
	}
	got, _ := filepath.Glob(filepath.Join(base, "s.*", "app.bin"))
	if len(got) != 20 {
		t.Fatalf("%d copies landed, want 20 (one per session's cwd)", len(got))
	}
	for _, p := range got {
		if fileSHA(t, p) != sum {
			t.Fatalf("%s differs", p)
		}
	}
	out := t.TempDir()
	r = c.Run("cp", "--json", fleet+":app.bin", out)
	if r.Code != 0 {
		t.Fatalf("pull from 20: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	pulled, _ := filepath.Glob(filepath.Join(out, "*", "c*", "app.bin"))
	if len(pulled) != 20 {
		t.Fatalf("%d pulled into DEST/TARGET/, want 20:\n%s", len(pulled), r.Stdout)
	}
	for _, p := range pulled {
		if fileSHA(t, p) != sum {
			t.Fatalf("%s differs", p)
		}
	}
	if !strings.Contains(r.Stdout, `"summary"`) {
		t.Errorf("no summary record:\n%s", r.Stdout)
	}
	// One target closed: one line for it, the others done, exit 255.
	c.MustRun("remove", strings.Split(exprs[0], "/")[0]+"/c3")
	r = c.Run("cp", filepath.Join(local, "app.bin"), fleet+":again.bin")
	if r.Code != 255 || strings.Count(r.Stderr, "c3") < 1 {
		t.Fatalf("push with a closed session: exit %d, want 255 and a line naming c3\n%s", r.Code, r.Stderr)
	}
	if again, _ := filepath.Glob(filepath.Join(base, "s.*", "again.bin")); len(again) != 19 {
		t.Fatalf("%d copies with one session closed, want 19", len(again))
	}
}

// TestCpBadInput: each refusal names the path and what to do, and leaves
// nothing half-written behind.
func TestCpBadInput(t *testing.T) {
	c := NewClient(t)
	login, home, uid, opts := cpUser(t, c)
	c.User = login
	a := StartAgent(t, opts)
	work := filepath.Join(home, fmt.Sprintf("cpbad-%d", time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(work) })
	sess := a.Addr + "/bad"
	c.MustRun("new", "--name", "bad", a.Addr)
	c.MustRun("invoke", sess, "mkdir -p "+work+" && cd "+work)
	local := t.TempDir()
	writeRandom(t, filepath.Join(local, "f"), 1000)
	os.Mkdir(filepath.Join(local, "dir"), 0o755)
	noTemps := func(t *testing.T, dir string) {
		t.Helper()
		if m, _ := filepath.Glob(filepath.Join(dir, ".*.tether-*")); len(m) > 0 {
			t.Errorf("temp files left behind: %v", m)
		}
	}
	expect := func(t *testing.T, r Result, want ...string) {
		t.Helper()
		if r.Code == 0 {
			t.Fatalf("exit 0, want a failure\n%s", r.Stderr)
		}
		t.Logf("exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
		for _, w := range want {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, r.Stderr)
			}
		}
	}
	t.Run("missing source", func(t *testing.T) {
		expect(t, c.Run("cp", filepath.Join(local, "nosuch"), sess+":x"), "nosuch", "no such file")
		expect(t, c.Run("cp", sess+":nosuch", local), "nosuch", "does not exist")
	})
	t.Run("directory without -r", func(t *testing.T) {
		expect(t, c.Run("cp", filepath.Join(local, "dir"), sess+":d"), "is a directory (use -r")
	})
	t.Run("parent missing", func(t *testing.T) {
		expect(t, c.Run("cp", filepath.Join(local, "f"), sess+":no/such/f"), "no/such", "--parents")
		c.MustRun("cp", "--parents", filepath.Join(local, "f"), sess+":now/made/f")
		if _, err := os.Stat(filepath.Join(work, "now/made/f")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("file over a directory", func(t *testing.T) {
		os.MkdirAll(filepath.Join(work, "isdir", "f"), 0o755)
		os.Chown(filepath.Join(work, "isdir"), uid, -1)
		os.Chown(filepath.Join(work, "isdir", "f"), uid, -1)
		expect(t, c.Run("cp", filepath.Join(local, "f"), sess+":isdir"), "isdir/f is a directory")
		noTemps(t, filepath.Join(work, "isdir"))
	})
	t.Run("bad session name", func(t *testing.T) {
		r := c.Run("cp", filepath.Join(local, "f"), a.Addr+"/..:x")
		expect(t, r, "..")
	})
	t.Run("closed session", func(t *testing.T) {
		c.MustRun("new", "--name", "gone", a.Addr)
		c.MustRun("remove", a.Addr+"/gone")
		r := c.Run("cp", filepath.Join(local, "f"), a.Addr+"/gone:x")
		if r.Code != 255 || !strings.Contains(r.Stderr, "gone") {
			t.Fatalf("exit %d, want 255 and a line naming the session\n%s", r.Code, r.Stderr)
		}
	})
	t.Run("file changing while copied", func(t *testing.T) {
		p := filepath.Join(local, "growing")
		writeRandom(t, p, 50<<20)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			defer f.Close()
			for {
				select {
				case <-stop:
					return
				default:
					f.Write([]byte("more\n"))
				}
			}
		}()
		r := c.Run("cp", p, sess+":growing")
		close(stop)
		<-done
		expect(t, r, "growing", "changed while it was copied")
		if _, err := os.Stat(filepath.Join(work, "growing")); err == nil {
			t.Errorf("a file that changed while copied replaced the destination")
		}
		noTemps(t, work)
	})
	t.Run("not writable", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs a root agent: the session's user must be someone who cannot write /etc")
		}
		expect(t, c.Run("cp", filepath.Join(local, "f"), sess+":/etc/tether-cp-test"), "/etc", "permission denied")
		if _, err := os.Stat("/etc/tether-cp-test"); err == nil {
			os.Remove("/etc/tether-cp-test")
			t.Fatalf("the file was written into /etc: not as the session's user")
		}
		noTemps(t, "/etc")
	})
	t.Run("disk full", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("mounting a small tmpfs needs root")
		}
		mnt := filepath.Join(work, "small")
		os.Mkdir(mnt, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=1m,uid=%d", uid), "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
		writeRandom(t, filepath.Join(local, "4m"), 4<<20)
		expect(t, c.Run("cp", filepath.Join(local, "4m"), sess+":small/4m"), "small/4m")
		ents, _ := os.ReadDir(mnt)
		if len(ents) != 0 {
			t.Errorf("a full disk kept %d entries (want nothing half-written): %v", len(ents), ents)
		}
	})
}

// TestCpBareHostAndHome: a bare host copies through a temporary session,
// which is gone afterwards; ~ is the session user's home; nothing is
// printed when stderr is not a terminal.
func TestCpBareHostAndHome(t *testing.T) {
	c := NewClient(t)
	login, home, uid, opts := cpUser(t, c)
	c.User = login
	a := StartAgent(t, opts)
	name := fmt.Sprintf("cphome-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join(home, name)) })
	local := t.TempDir()
	sum := writeRandom(t, filepath.Join(local, "f"), 1<<20)
	c.MustRun("list", a.Addr) // trust the host key first (a notice on stderr)
	r := c.Run("cp", filepath.Join(local, "f"), a.Addr+":~/"+name)
	if r.Code != 0 || r.Stderr != "" || r.Stdout != "" {
		t.Fatalf("cp to a bare host: exit %d, want 0 and no output\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	if got := fileSHA(t, filepath.Join(home, name)); got != sum {
		t.Fatalf("~/%s: sha256 %s, want %s", name, got, sum)
	}
	ownedBy(t, filepath.Join(home, name), uid)
	// A relative path on a bare host is relative to the home, where a new
	// session starts.
	back := filepath.Join(local, "back")
	c.MustRun("cp", a.Addr+":"+name, back)
	if got := fileSHA(t, back); got != sum {
		t.Fatalf("pulled from a bare host: sha256 %s, want %s", got, sum)
	}
	WaitFor(t, 10*time.Second, "the temporary sessions to be gone", func() bool {
		return !strings.Contains(c.MustRun("list", a.Addr), "tmp-")
	})
}

// TestCpProgressOnTerminal: on a terminal, cp draws its bar (the words,
// the bytes, the rate) and leaves the last state on screen; without one it
// prints nothing (TestCpBareHostAndHome).
func TestCpProgressOnTerminal(t *testing.T) {
	c := NewClient(t)
	login, home, _, opts := cpUser(t, c)
	c.User = login
	a := StartAgent(t, opts)
	name := fmt.Sprintf("cpbar-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join(home, name)) })
	local := t.TempDir()
	writeRandom(t, filepath.Join(local, "f"), 64<<20)
	c.MustRun("list", a.Addr) // trust the host key first
	tt := cliInTmux(t, c, 150, 20, "cp", filepath.Join(local, "f"), a.Addr+":~/"+name)
	tt.waitFor("cp to end", func(s string) bool { return strings.Contains(s, "TETHER-EXIT=") })
	s := tt.screen()
	for _, want := range []string{"TETHER-EXIT=0", "copying", "done!", "67.11MB", "B/s]"} { // 64 MiB in go-pretty's units
		if !strings.Contains(s, want) {
			t.Fatalf("screen lacks %q:\n%s", want, s)
		}
	}
}

// TestCpInterruptLeavesNothing: Ctrl-C (SIGINT) in the middle of a push
// and of a pull stops the copy, exits 130 and removes the temp file; the
// destination never appears.
func TestCpInterruptLeavesNothing(t *testing.T) {
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	remote := t.TempDir()
	c.MustRun("new", "--name", "int", a.Addr)
	c.MustRun("invoke", a.Addr+"/int", "cd "+remote)
	local := t.TempDir()
	writeRandom(t, filepath.Join(local, "big.bin"), 200<<20)
	interrupt := func(t *testing.T, tempDir string, args ...string) {
		t.Helper()
		cmd := c.Command(context.Background(), args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		WaitFor(t, time.Minute, "the copy to be under way", func() bool {
			m, _ := filepath.Glob(filepath.Join(tempDir, ".*.tether-*"))
			if len(m) == 0 {
				return false
			}
			fi, err := os.Stat(m[0])
			return err == nil && fi.Size() > 0
		})
		cmd.Process.Signal(os.Interrupt)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("interrupted cp: %v, want exit 130\n%s", err, stderr.String())
		}
		if m, _ := filepath.Glob(filepath.Join(tempDir, ".*.tether-*")); len(m) > 0 {
			t.Fatalf("temp files left after Ctrl-C: %v\n%s", m, stderr.String())
		}
	}
	t.Run("push", func(t *testing.T) {
		interrupt(t, remote, "cp", filepath.Join(local, "big.bin"), a.Addr+"/int:big.bin")
		if _, err := os.Stat(filepath.Join(remote, "big.bin")); err == nil {
			t.Fatal("an interrupted push put the file in place")
		}
	})
	t.Run("pull", func(t *testing.T) {
		os.Rename(filepath.Join(local, "big.bin"), filepath.Join(remote, "big.bin"))
		back := t.TempDir()
		interrupt(t, back, "cp", a.Addr+"/int:big.bin", back)
		if _, err := os.Stat(filepath.Join(back, "big.bin")); err == nil {
			t.Fatal("an interrupted pull put the file in place")
		}
	})
}

// TestCpRefusesSessionHeldElsewhere: a session another client holds (here:
// it follows a running command) is Busy for cp, as for invoke; the holder's
// command goes on untouched. The holder itself may copy meanwhile.
func TestCpRefusesSessionHeldElsewhere(t *testing.T) {
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	sess := a.Addr + "/held"
	c.MustRun("new", "--name", "held", a.Addr)
	remote := t.TempDir()
	c.MustRun("invoke", sess, "cd "+remote)
	other := c.WithKey()
	other.MustRun("list", a.Addr)
	ctx, cancel := context.WithCancel(context.Background())
	run := other.Command(ctx, "invoke", sess, "echo started; sleep 60")
	out, _ := run.StdoutPipe()
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); run.Wait() }()
	buf := make([]byte, 8)
	io.ReadFull(out, buf) // "started\n": the other client follows the command
	local := filepath.Join(t.TempDir(), "f")
	writeRandom(t, local, 1000)
	r := c.Run("cp", local, sess+":f")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Busy") {
		t.Fatalf("cp into a session another client holds: exit %d, want a Busy refusal\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(remote, "f")); err == nil {
		t.Fatal("the file was copied into a session held elsewhere")
	}
	r = other.Run("cp", local, sess+":f")
	if r.Code != 0 {
		t.Fatalf("the holder's own cp: exit %d\n%s", r.Code, r.Stderr)
	}
	if st := c.MustRun("list", a.Addr); !strings.Contains(st, "Busy") {
		t.Errorf("the holder's command should still run (Busy):\n%s", st)
	}
}

// TestCpShapes: cp's and scp's shapes — an empty file, a named symlink
// (copied as its target), -r to a new name (push and pull), several sources
// into a directory, and several sources into what is not one (refused).
func TestCpShapes(t *testing.T) {
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	sess := a.Addr + "/shapes"
	c.MustRun("new", "--name", "shapes", a.Addr)
	remote := t.TempDir()
	c.MustRun("invoke", sess, "cd "+remote)
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "empty"), nil, 0o644)
	sum := writeRandom(t, filepath.Join(local, "real"), 5000)
	os.Symlink("real", filepath.Join(local, "link"))
	makeTree(t, filepath.Join(local, "tree"), 30)

	c.MustRun("cp", filepath.Join(local, "empty"), filepath.Join(local, "link"), sess+":.")
	if fi, err := os.Stat(filepath.Join(remote, "empty")); err != nil || fi.Size() != 0 {
		t.Errorf("empty file: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(remote, "link")); err != nil || !fi.Mode().IsRegular() || fileSHA(t, filepath.Join(remote, "link")) != sum {
		t.Errorf("a named symlink should arrive as a copy of its target: %v %v", fi, err)
	}
	c.MustRun("cp", "-r", filepath.Join(local, "tree"), sess+":renamed")
	if a, b := treeDigest(t, filepath.Join(local, "tree"), false), treeDigest(t, filepath.Join(remote, "renamed"), false); a != b {
		t.Errorf("-r to a new name: %s", diffDigest(a, b))
	}
	back := filepath.Join(t.TempDir(), "back")
	c.MustRun("cp", "-r", sess+":renamed", back)
	if a, b := treeDigest(t, filepath.Join(local, "tree"), false), treeDigest(t, back, false); a != b {
		t.Errorf("pull -r to a new name: %s", diffDigest(a, b))
	}
	r := c.Run("cp", filepath.Join(local, "empty"), filepath.Join(local, "real"), sess+":empty")
	if r.Code == 0 || !strings.Contains(r.Stderr, "is not a directory") {
		t.Errorf("several sources onto a file: exit %d\n%s", r.Code, r.Stderr)
	}
}

// TestCpKeepsSessionFromIdling: a session whose idle timeout is shorter
// than a copy into it is not closed while the copy runs (the copy counts
// as activity), and closes once it has been idle for its timeout again.
// (The copy must start within the 2 s after the disconnect.)
func TestCpKeepsSessionFromIdling(t *testing.T) {
	c := NewClient(t)
	a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
	remote := t.TempDir()
	sess := a.Addr + "/idle"
	c.MustRun("new", "--name", "idle", a.Addr)
	c.MustRun("invoke", sess, "cd "+remote)
	local := filepath.Join(t.TempDir(), "f")
	sum := writeRandom(t, local, 30<<20)
	p := newCountingProxy(t, a.Addr, 1<<40, 5<<20) // 30 MiB at 5 MiB/s: 6 s, three idle timeouts
	c.MustRun("list", p.ln.Addr().String())
	// Disconnected with a 2 s idle timeout: without a copy it closes 2 s on.
	c.MustRun("disconnect", "--idle-timeout", "2s", sess)
	r := c.Run("cp", local, p.ln.Addr().String()+"/idle:f")
	if r.Code != 0 {
		t.Fatalf("cp into a session with a 2s idle timeout: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := fileSHA(t, filepath.Join(remote, "f")); got != sum {
		t.Fatalf("sha256 %s, want %s", got, sum)
	}
	WaitFor(t, 30*time.Second, "the session to close once idle again", func() bool {
		return !strings.Contains(c.MustRun("list", a.Addr), "idle ")
	})
}
