package agent

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestUserIOThread: the thread that does tether cp's pread/pwrite for a
// root agent has the user's fsuid and fsgid and no effective capabilities
// (so quota and reserved blocks apply as to her), keeps uid 0, and a path
// only root may write is refused to it; other threads keep root's rights.
func TestUserIOThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "root-only")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		status  string
		openErr error
		err     error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := userIOThread(65534, 65534); err != nil {
			res <- result{err: err}
			return
		}
		b, err := os.ReadFile("/proc/thread-self/status")
		f, oerr := os.OpenFile(secret, os.O_WRONLY, 0)
		if oerr == nil {
			f.Close()
		}
		res <- result{status: string(b), openErr: oerr, err: err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	field := func(name string) string {
		for _, l := range strings.Split(r.status, "\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				return strings.Join(strings.Fields(v), " ")
			}
		}
		return ""
	}
	if got := field("Uid"); got != "0 0 0 65534" {
		t.Errorf("Uid (real effective saved fs) = %q, want 0 0 0 65534", got)
	}
	if got := field("Gid"); got != "0 0 0 65534" {
		t.Errorf("Gid = %q, want 0 0 0 65534", got)
	}
	if got := field("CapEff"); got != "0000000000000000" {
		t.Errorf("CapEff = %q, want none", got)
	}
	if r.openErr == nil {
		t.Error("the I/O thread opened a root-only file for writing; want permission denied")
	}
	if f, err := os.OpenFile(secret, os.O_WRONLY, 0); err != nil {
		t.Errorf("another thread lost root's rights: %v", err)
	} else {
		f.Close()
	}
}
