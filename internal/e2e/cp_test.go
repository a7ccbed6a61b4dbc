package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
