package sshauth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "keys")
	path := filepath.Join(dir, "host_ed25519")
	s1, created, err := LoadOrCreateHostKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v created=%v", err, created)
	}
	if s1.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("type %s", s1.PublicKey().Type())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v", fi.Mode(), err)
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", di.Mode())
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("not an OpenSSH key: %q", data[:40])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}

	s2, created, err := LoadOrCreateHostKey(path)
	if err != nil || created {
		t.Fatalf("load: %v created=%v", err, created)
	}
	if !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Error("reloaded key differs")
	}

	must(t, os.Chmod(path, 0o644))
	if _, _, err := LoadOrCreateHostKey(path); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("too-open key: %v", err)
	}
	must(t, os.Chmod(path, 0o600))
	must(t, os.WriteFile(path, []byte("junk"), 0o600))
	if _, _, err := LoadOrCreateHostKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("junk key: %v", err)
	}
}

func TestLoadOrCreateHostKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_ed25519")
	const n = 8
	var wg sync.WaitGroup
	keys := make([][]byte, n)
	createdN := make([]bool, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, c, err := LoadOrCreateHostKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i], createdN[i] = s.PublicKey().Marshal(), c
		}()
	}
	wg.Wait()
	nc := 0
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Errorf("starter %d got another key", i)
		}
		if createdN[i] {
			nc++
		}
	}
	if nc != 1 {
		t.Errorf("%d starters say they created the key", nc)
	}
}
