package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bigFile writes n random bytes to a file and returns its path and hash.
func bigFile(t *testing.T, n int) (string, [32]byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	p := filepath.Join(ShortTempDir(t), "data")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(data)
}

func TestBlockModePausesAndDeliversAll(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxOutputBufferMB", "1")
	n := 100 << 20
	if testing.Short() {
		n = 20 << 20
	}
	path, want := bigFile(t, n)
	addr := strings.TrimSpace(c.MustRun("new", "--name", "blk", a.Host()))
	c.MustRun("invoke", "--disconnected", addr, "cat "+path+"; echo done >&2")
	// The command is paused, not killed: still running, journal at its bound.
	time.Sleep(500 * time.Millisecond)
	list := c.MustRun("list", a.Host())
	if !strings.Contains(list, "cat "+path) || !strings.Contains(list, "Disconnected") {
		t.Fatalf("command not shown running while paused:\n%s", list)
	}
	journalBytes := dirSize(filepath.Join(a.State, "s", c.User, "blk", "journal"))
	if journalBytes > 3<<20 {
		t.Fatalf("journal grew to %d bytes with a 1 MiB bound", journalBytes)
	}
	c.MustRun("connect", addr)
	r := c.Run("receive", addr)
	if r.Code != 0 {
		t.Fatalf("receive: exit %d %s", r.Code, r.Stderr)
	}
	if got := sha256.Sum256([]byte(r.Stdout)); got != want || len(r.Stdout) != n {
		t.Fatalf("received %d of %d bytes, hash differs", len(r.Stdout), n)
	}
	if !strings.Contains(r.Stderr, "done") {
		t.Fatalf("stderr lost: %q", r.Stderr)
	}
}

func TestDropModeReportsDropped(t *testing.T) {
	a, c := setup(t)
	c.MustRun("config", "set", a.Host(), "MaxOutputBufferMB", "1")
	c.MustRun("config", "set", a.Host(), "OutputBufferingMode", "drop")
	n := 10 << 20
	path, _ := bigFile(t, n)
	addr := strings.TrimSpace(c.MustRun("new", a.Host()))
	c.MustRun("invoke", "--disconnected", addr, "cat "+path)
	WaitFor(t, 30*time.Second, "the command to finish", func() bool {
		return !strings.Contains(c.MustRun("list", a.Host()), "cat "+path)
	})
	c.MustRun("connect", addr)
	r := c.Run("receive", addr)
	if r.Code != 0 {
		t.Fatalf("receive: exit %d %s", r.Code, r.Stderr)
	}
	i := strings.Index(r.Stderr, ": ")
	j := strings.Index(r.Stderr, " bytes of output were dropped")
	if i < 0 || j < 0 {
		t.Fatalf("receive did not report dropped bytes: %q", r.Stderr)
	}
	fields := strings.Fields(r.Stderr[:j])
	dropped, err := strconv.Atoi(fields[len(fields)-1])
	if err != nil {
		t.Fatalf("dropped count in %q: %v", r.Stderr, err)
	}
	if dropped+len(r.Stdout) != n {
		t.Fatalf("received %d + dropped %d != written %d", len(r.Stdout), dropped, n)
	}
	if len(r.Stdout) == 0 || len(r.Stdout) > 2<<20 {
		t.Fatalf("received %d bytes from a 1 MiB journal", len(r.Stdout))
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
