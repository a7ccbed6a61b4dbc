package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/safefs"
)

// OSUser is a real account made for a test.
type OSUser struct {
	Name     string
	Home     string
	UID, GID int
}

// Credential runs a process as the user.
func (u OSUser) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}
}

// EnsureUser creates (once) a real OS user with a home directory. It needs
// root and useradd; without them the test is skipped.
func EnsureUser(t testing.TB, name string, groups ...string) OSUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create OS users (CI runs as root)")
	}
	lockUsers(t)
	for _, g := range groups {
		if _, err := user.LookupGroup(g); err != nil {
			if out, err := exec.Command("groupadd", g).CombinedOutput(); err != nil {
				t.Fatalf("groupadd %s: %v %s", g, err, out)
			}
		}
	}
	if _, err := user.Lookup(name); err != nil {
		args := []string{"-m", "-s", "/bin/sh"}
		if len(groups) > 0 {
			args = append(args, "-G", joinComma(groups))
		}
		if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v %s", name, err, out)
		}
	} else if len(groups) > 0 {
		exec.Command("usermod", "-a", "-G", joinComma(groups), name).Run()
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return OSUser{Name: name, Home: u.HomeDir, UID: uid, GID: gid}
}

// As runs fn with the user's file-system rights (as an attacking user's
// own process would), on a thread of its own.
func (u OSUser) As(fn func() error) error {
	return safefs.AsUser(safefs.Cred{UID: u.UID, GID: u.GID}, time.Minute, fn)
}

// Authorize writes the user's ~/.ssh/authorized_keys with these public key
// files, owned by the user with sshd's modes.
func (u OSUser) Authorize(t testing.TB, pubKeys ...string) string {
	t.Helper()
	dir := filepath.Join(u.Home, ".ssh")
	os.MkdirAll(dir, 0o700)
	os.Chown(dir, u.UID, u.GID)
	var data []byte
	for _, k := range pubKeys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	p := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o600)
	os.Chown(p, u.UID, u.GID)
	return p
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// The test users are the machine's, not the test's: two test processes at
// once (a package's tests and a benchmark, two worktrees) would rewrite
// each other's authorized_keys. A test that uses them holds a machine-wide
// lock until it ends.
var (
	usersMu     sync.Mutex
	usersHolder testing.TB
)

func lockUsers(t testing.TB) {
	usersMu.Lock()
	held := usersHolder == t
	usersMu.Unlock()
	if held {
		return
	}
	f, err := os.OpenFile(filepath.Join(testBase(), "users.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("users lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("users lock: %v", err)
	}
	usersMu.Lock()
	usersHolder = t
	usersMu.Unlock()
	t.Cleanup(func() {
		usersMu.Lock()
		usersHolder = nil
		usersMu.Unlock()
		f.Close() // releases the flock
	})
}
