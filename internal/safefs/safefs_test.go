package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func openDir(t *testing.T, p string) *os.File {
	t.Helper()
	d, err := OpenDir(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestReadBeneathRefusesHostileEntries(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "ok.json"), []byte(`{"a":1}`), 0o600))
	must(os.Mkdir(filepath.Join(root, "sub"), 0o700))
	must(os.WriteFile(filepath.Join(root, "sub", "ok.json"), []byte(`{}`), 0o600))
	must(os.Symlink(filepath.Join(root, "ok.json"), filepath.Join(root, "link.json")))
	must(os.Symlink("/dev/zero", filepath.Join(root, "zero.json")))
	must(os.Symlink(filepath.Join(root, "sub"), filepath.Join(root, "dirlink")))
	must(unix.Mkfifo(filepath.Join(root, "fifo.json"), 0o600))
	must(os.WriteFile(filepath.Join(root, "big.json"), make([]byte, 100<<10), 0o600))
	outside := filepath.Join(t.TempDir(), "secret")
	must(os.WriteFile(outside, []byte("secret"), 0o600))

	d := openDir(t, root)
	me := os.Geteuid()
	if b, err := ReadBeneath(d, "ok.json", 64<<10, me); err != nil || string(b) != `{"a":1}` {
		t.Fatalf("ok.json: %q %v", b, err)
	}
	if _, err := ReadBeneath(d, "sub/ok.json", 64<<10, me); err != nil {
		t.Fatalf("sub/ok.json: %v", err)
	}
	cases := []struct {
		name string
		want error // nil: any error
	}{
		{"link.json", nil},
		{"zero.json", nil},
		{"dirlink/ok.json", nil},
		{"fifo.json", ErrNotRegular},
		{"big.json", ErrTooLarge},
		{"../" + filepath.Base(filepath.Dir(outside)) + "/secret", ErrBadName},
		{"sub/../ok.json", ErrBadName},
		{outside, ErrBadName},
		{"missing.json", os.ErrNotExist},
	}
	for _, c := range cases {
		done := make(chan error, 1)
		go func() {
			_, err := ReadBeneath(d, c.name, 64<<10, me)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: read, want an error", c.name)
			} else if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: blocked (a FIFO or device must never block)", c.name)
		}
	}
}

func TestReadBeneathChecksOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make files of another owner")
	}
	root := t.TempDir()
	other := filepath.Join(root, "others")
	os.WriteFile(other, []byte("x"), 0o644)
	os.Chown(other, 4242, 4242)
	// A hard link to another owner's file, made in a directory of the
	// victim's: fstat sees the real owner.
	if err := os.Link(other, filepath.Join(root, "hard.json")); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, root)
	if _, err := ReadBeneath(d, "hard.json", 1024, 1000); !errors.Is(err, ErrOwner) {
		t.Fatalf("hard link to uid 4242's file read as uid 1000's: %v", err)
	}
	if _, err := ReadBeneath(d, "hard.json", 1024, 4242); err != nil {
		t.Fatal(err)
	}
}

func TestMkdirOwned(t *testing.T) {
	root := t.TempDir()
	d := openDir(t, root)
	uid, gid := os.Geteuid(), os.Getegid()
	if os.Geteuid() == 0 {
		uid, gid = 4242, 4243
	}
	f, created, err := MkdirOwned(d, "u", 0o700, uid, gid, true)
	if err != nil || !created {
		t.Fatalf("MkdirOwned: %v %v", created, err)
	}
	fu, fg, _ := Owner(f)
	f.Close()
	if fu != uid || fg != gid {
		t.Fatalf("owner %d:%d, want %d:%d", fu, fg, uid, gid)
	}
	if _, _, err := MkdirOwned(d, "u", 0o700, uid, gid, true); !errors.Is(err, os.ErrExist) {
		t.Fatalf("exclusive on existing: %v", err)
	}
	if f, created, err := MkdirOwned(d, "u", 0o711, uid, gid, false); err != nil || created {
		t.Fatalf("existing: %v %v", created, err)
	} else {
		f.Close()
	}
	if fi, _ := os.Stat(filepath.Join(root, "u")); fi.Mode().Perm() != 0o711 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	// A symlink in its place is refused, and its target untouched.
	target := t.TempDir()
	os.Symlink(target, filepath.Join(root, "l"))
	os.WriteFile(filepath.Join(root, "file"), nil, 0o600)
	for _, n := range []string{"l", "file"} {
		if _, _, err := MkdirOwned(d, n, 0o700, uid, gid, false); !IsNotDir(err) {
			t.Fatalf("%s: %v, want ErrNotDir", n, err)
		}
	}
	if fi, _ := os.Stat(target); fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("symlink target changed owner")
	}
	for _, n := range []string{"", "..", "a/b", "."} {
		if _, _, err := MkdirOwned(d, n, 0o700, uid, gid, false); err == nil {
			t.Fatalf("%q accepted", n)
		}
	}
}

func TestRemoveContentsNeverFollows(t *testing.T) {
	root := t.TempDir()
	victim := t.TempDir()
	os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o600)
	s := filepath.Join(root, "s")
	os.MkdirAll(filepath.Join(s, "a", "b"), 0o700)
	os.WriteFile(filepath.Join(s, "a", "b", "f"), nil, 0o600)
	os.Symlink(victim, filepath.Join(s, "link"))
	os.Symlink(victim, filepath.Join(s, "a", "link"))
	unix.Mkfifo(filepath.Join(s, "fifo"), 0o600)
	d := openDir(t, root)
	if err := RemoveContents(d, "s"); err != nil {
		t.Fatal(err)
	}
	if err := Rmdir(d, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
		t.Fatalf("followed a symlink: %v", err)
	}
	if _, err := os.Lstat(s); !os.IsNotExist(err) {
		t.Fatalf("still there: %v", err)
	}
}

func TestAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("root only"), 0o600)
	mine := filepath.Join(dir, "mine")
	os.WriteFile(mine, []byte("hers"), 0o600)
	os.Chown(mine, 4242, 4242)
	c := Cred{UID: 4242, GID: 4242}
	err := AsUser(c, 10*time.Second, func() error {
		_, err := os.ReadFile(secret)
		return err
	})
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("root-only file as uid 4242: %v, want permission denied", err)
	}
	var got []byte
	if err := AsUser(c, 10*time.Second, func() (err error) { got, err = os.ReadFile(mine); return }); err != nil || string(got) != "hers" {
		t.Fatalf("own file: %q %v", got, err)
	}
	// Files it makes are the user's; the rest of the process is still root.
	made := filepath.Join(dir, "made")
	os.Chmod(dir, 0o777)
	if err := AsUser(c, 10*time.Second, func() error { return os.WriteFile(made, nil, 0o600) }); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(made); fi.Sys().(*syscall.Stat_t).Uid != 4242 {
		t.Fatalf("made by uid %d", fi.Sys().(*syscall.Stat_t).Uid)
	}
	for i := 0; i < 20; i++ { // the user's threads never serve other goroutines
		if _, err := os.ReadFile(secret); err != nil {
			t.Fatalf("root lost its rights after AsUser: %v", err)
		}
	}
	// A stuck fn times out and holds a slot, not the caller.
	release := make(chan struct{})
	err = AsUser(c, 50*time.Millisecond, func() error { <-release; return nil })
	close(release)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("stuck fn: %v", err)
	}
	if !strings.Contains(ErrBusy.Error(), "too many") {
		t.Fatal(ErrBusy)
	}
}
