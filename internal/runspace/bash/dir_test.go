package bash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirFollowsCd: Dir is where bash stands now (the kernel's cwd of
// bash), after a cd; a removed directory is an error saying so.
func TestDirFollowsCd(t *testing.T) {
	s := newShell(t, Options{NoProfile: true})
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	run(t, s, "cd "+sub, "")
	if got, err := s.Dir(); err != nil || got != sub {
		t.Fatalf("Dir after cd = %q, %v; want %q", got, err, sub)
	}
	os.Remove(sub)
	if _, err := s.Dir(); err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("Dir of a removed cwd: %v, want an error saying it was removed", err)
	}
}
