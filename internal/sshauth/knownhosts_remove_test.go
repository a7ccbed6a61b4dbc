package sshauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestKnownHostsRemove(t *testing.T) {
	k1, _ := newEd25519(t)
	k2, _ := newEd25519(t)
	key := func(s ssh.Signer) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) }
	path := filepath.Join(t.TempDir(), "known_hosts")
	keep := []string{
		"# my hosts",
		"",
		"other.example " + key(k1),
		"@cert-authority [10.0.0.5]:4423 " + key(k2),
		"@revoked [10.0.0.5]:4423 " + key(k1),
		"*.example,10.0.0.* " + key(k2),
		"10.0.0.5 " + key(k2) + " (default port: another host entry)",
		"[10.0.0.5]:4424 " + key(k2),
	}
	gone := []string{
		"[10.0.0.5]:4423 " + key(k1) + " a comment",
		knownhosts.HashHostname("[10.0.0.5]:4423") + " " + key(k2),
		"old.example,[10.0.0.5]:4423 " + key(k1),
	}
	lines := []string{keep[0], keep[1], gone[0], keep[2], keep[3], gone[1], keep[4], keep[5], gone[2], keep[6], keep[7]}
	orig := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	kh := &KnownHosts{Path: path}
	removed, err := kh.Remove("10.0.0.5:4423")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 || removed[0].Line != 3 || removed[1].Line != 6 || removed[2].Line != 9 || removed[0].Text != gone[0] {
		t.Fatalf("removed %+v", removed)
	}
	if got, want := readFile(t, path), strings.Join(keep, "\n")+"\n"; got != want {
		t.Fatalf("left:\n%s\nwant:\n%s", got, want)
	}
	if got := readFile(t, path+".old"); got != orig {
		t.Fatalf("FILE.old:\n%s", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Nothing left to remove: no error, no change.
	if removed, err := kh.Remove("[10.0.0.5]:4423"); err != nil || len(removed) != 0 {
		t.Fatalf("again: %v %v", removed, err)
	}
	// The default port is written bare.
	if removed, err := kh.Remove("10.0.0.5"); err != nil || len(removed) != 1 || removed[0].Line != 7 {
		t.Fatalf("default port: %+v %v", removed, err)
	}
	if _, err := kh.Remove("*.example"); err == nil {
		t.Fatal("a pattern was taken for a host")
	}
	if removed, err := (&KnownHosts{Path: filepath.Join(t.TempDir(), "none")}).Remove("x"); err != nil || removed != nil {
		t.Fatalf("no file: %v %v", removed, err)
	}
}
