package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// oldBinary builds ./cmd/tether as another version (cli.Version set with
// -ldflags -X): the client and host binary of an older release.
func oldBinary(t *testing.T, version string) string {
	t.Helper()
	dir := ShortTempDir(t)
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "tether")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", p, "-ldflags", "-X github.com/tether-sh/tether/internal/cli.Version="+version, "./cmd/tether")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", version, err, out)
	}
	return p
}

// TestSSHNewerClientFindsOlderSessions: a session made by an older
// tether (its own VERSION-SHA directory and session host on the host),
// then a newer client: it installs itself next to the old one, and its
// stdio agent finds the old version's session host (the wire protocol
// between agent and session host is versioned), whose state is intact.
// prune keeps the old binary while that session host runs.
func TestSSHNewerClientFindsOlderSessions(t *testing.T) {
	old := oldBinary(t, "0.0.0-old")
	w := newSSHWorld(t, "")
	c := w.client
	runOld := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := c.Command(ctx, args...)
		cmd.Path, cmd.Args[0] = old, old
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("old tether %v: %v", args, err)
		}
		return string(out)
	}
	if v := runOld("version"); !strings.Contains(v, "0.0.0-old") {
		t.Fatalf("old binary's version: %q", v)
	}
	if got := runOld("new", "--name", "s", "ssh://web1"); got != "ssh://web1/s\n" {
		t.Fatalf("old new: %q", got)
	}
	runOld("invoke", "ssh://web1/s", "x=from-old; cd /tmp")
	// The newer client reaches the host afresh (no master of the old one's).
	c.MustRun("mux", "stop", "ssh://web1")

	list := c.MustRun("list", "ssh://web1")
	if !strings.Contains(list, "ssh://web1/s") {
		t.Fatalf("the newer client's list does not show the old session:\n%s", list)
	}
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $x $PWD"); got != "from-old /tmp\n" {
		t.Fatalf("the old session's state through the newer client: %q", got)
	}
	bin := filepath.Join(w.user.Home, ".local", "share", "tether", "bin")
	dirs, _ := filepath.Glob(filepath.Join(bin, "*", "tether"))
	var oldDir string
	for _, d := range dirs {
		if strings.HasPrefix(filepath.Base(filepath.Dir(d)), "0.0.0-old-") {
			oldDir = filepath.Dir(d)
		}
	}
	if len(dirs) != 2 || oldDir == "" {
		t.Fatalf("installed: %v, want the old version's and the new one's", dirs)
	}
	if hosts := procsOf(w.user.UID, oldDir+"/tether", "session-host"); len(hosts) == 0 {
		t.Fatalf("no session host runs from %s: the session is not the old version's", oldDir)
	}
	if out := c.MustRun("host", "prune", "ssh://web1"); !strings.Contains(out, "kept (session hosts run it) "+filepath.Base(oldDir)) {
		t.Fatalf("prune while the old session host runs: %q", out)
	}
}
