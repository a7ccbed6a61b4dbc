package bash

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s is not installed on this host", path)
	}
}

// compareWithBash runs cmds as separate commands in a Shell and as one
// `bash -c` script and wants the same stdout and status.
func compareWithBash(t *testing.T, env []string, dir string, cmds ...string) string {
	t.Helper()
	bashPath := needBash(t)
	ref := exec.Command(bashPath, "--noprofile", "--norc", "-c", strings.Join(cmds, "\n"))
	ref.Env, ref.Dir = env, dir
	want, err := ref.Output()
	if err != nil {
		t.Fatalf("bash -c: %v", err)
	}
	s := newShell(t, Options{NoProfile: true, Env: env, Dir: dir})
	var got string
	for _, c := range cmds {
		r := run(t, s, c, "")
		if r.code != 0 {
			t.Fatalf("%q: status %d, stderr %q", c, r.code, r.err)
		}
		got += r.out
	}
	if got != string(want) {
		t.Fatalf("session:\n%s\nbash -c:\n%s", got, want)
	}
	return got
}

func TestVenvActivate(t *testing.T) {
	if exec.Command("python3", "-m", "venv", "--help").Run() != nil {
		t.Skip("python3 -m venv is not available")
	}
	dir := t.TempDir()
	if out, err := exec.Command("python3", "-m", "venv", "--without-pip", filepath.Join(dir, "v")).CombinedOutput(); err != nil {
		t.Skipf("python3 -m venv failed: %v %s", err, out)
	}
	out := compareWithBash(t, os.Environ(), dir,
		"source v/bin/activate",
		`echo "$VIRTUAL_ENV"; command -v python | sed "s|^$PWD/||"; type -t deactivate`,
		"deactivate",
		`echo "[${VIRTUAL_ENV-}]"; type -t deactivate || echo gone`)
	if !strings.Contains(out, "v/bin/python") || !strings.Contains(out, "\n[]\n") {
		t.Fatalf("venv: %q", out)
	}
}

func TestEnvironmentModules(t *testing.T) {
	needFile(t, "/usr/share/modules/init/bash")
	dir := t.TempDir()
	mf := filepath.Join(dir, "mods", "tool")
	os.MkdirAll(mf, 0o755)
	os.WriteFile(filepath.Join(mf, "1.0"), []byte("#%Module1.0\nsetenv TOOL_HOME /opt/tool\nprepend-path PATH /opt/tool/bin\n"), 0o644)
	out := compareWithBash(t, os.Environ(), dir,
		". /usr/share/modules/init/bash",
		"module use "+filepath.Join(dir, "mods"),
		"module load tool/1.0",
		`echo "$TOOL_HOME"; echo "$PATH" | tr : '\n' | grep -c /opt/tool/bin`,
		"module unload tool",
		`echo "[${TOOL_HOME-}]"`)
	if !strings.Contains(out, "/opt/tool\n1\n[]") {
		t.Fatalf("modules: %q", out)
	}
}

func TestGitPS1(t *testing.T) {
	needFile(t, "/usr/lib/git-core/git-sh-prompt")
	dir := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", "-b", "trunk", dir).CombinedOutput(); err != nil {
		t.Skipf("git init: %v %s", err, out)
	}
	out := compareWithBash(t, os.Environ(), dir,
		". /usr/lib/git-core/git-sh-prompt",
		`GIT_PS1_SHOWDIRTYSTATE=1; __git_ps1 '(%s)'; echo`)
	if !strings.HasPrefix(out, "(trunk") {
		t.Fatalf("__git_ps1: %q", out)
	}
}

func TestBashCompletion(t *testing.T) {
	needFile(t, "/usr/share/bash-completion/bash_completion")
	out := compareWithBash(t, os.Environ(), t.TempDir(),
		". /usr/share/bash-completion/bash_completion",
		"complete -p cd; _completion_loader git 2>/dev/null; complete -p git 2>/dev/null | head -1 || echo none")
	if !strings.Contains(out, "complete") {
		t.Fatalf("bash-completion: %q", out)
	}
}

func TestProfile(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".bash_profile"), []byte("export FROM_PROFILE=yes\nalias pa='echo profile-alias'\necho profile-error >&2\n"), 0o644)
	os.WriteFile(filepath.Join(home, ".profile"), []byte("export FROM_DOT_PROFILE=yes\n"), 0o644)
	env := append(os.Environ(), "HOME="+home)
	s := newShell(t, Options{Env: env})
	r := run(t, s, `echo "$FROM_PROFILE ${FROM_DOT_PROFILE-no}"; pa; shopt -q login_shell || echo not-login`, "")
	if !strings.HasPrefix(r.out, "yes no\nprofile-alias\n") {
		t.Fatalf("profile: %+v", r)
	}
	n := s.Notices()
	if !strings.Contains(n, "profile-error") {
		t.Fatalf("notice: %q", n)
	}
	if s.Notices() != "" {
		t.Fatal("a notice came twice")
	}
	// /etc/profile ran too: it sets PS1 or PATH on most systems; at least
	// it was read without error (no notice other than ours).
	s2 := newShell(t, Options{Env: env, NoProfile: true})
	if r := run(t, s2, `echo "${FROM_PROFILE-none}"`, ""); r.out != "none\n" {
		t.Fatalf("NoProfile: %+v", r)
	}
}

func TestEtcProfileSourced(t *testing.T) {
	needFile(t, "/etc/profile")
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=/nowhere", "TERM=dumb"}
	s := newShell(t, Options{Env: env})
	// Debian's and most /etc/profile set PATH for a login shell.
	r := run(t, s, `echo "$PATH"`, "")
	if strings.TrimSpace(r.out) == "/nowhere" {
		t.Fatalf("/etc/profile did not run: PATH=%q", r.out)
	}
}

func TestProfileTimeout(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".bash_profile"), []byte("early=1\nsleep 100\nlate=1\n"), 0o644)
	s := newShell(t, Options{Env: append(os.Environ(), "HOME="+home), ProfileTimeout: 300 * time.Millisecond})
	n := s.Notices()
	if !strings.Contains(n, "did not finish") {
		t.Fatalf("notice: %q", n)
	}
	if r := run(t, s, `echo ok ${late-nolate}`, ""); r.out != "ok nolate\n" {
		t.Fatalf("after a hung profile: %+v", r)
	}
}

func TestProfileIgnoringInterrupt(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".bash_profile"), []byte("trap '' INT\nwhile :; do sleep 0.05; done\n"), 0o644)
	s := newShell(t, Options{Env: append(os.Environ(), "HOME="+home), ProfileTimeout: 200 * time.Millisecond, KillGrace: 100 * time.Millisecond})
	if n := s.Notices(); !strings.Contains(n, "profile") {
		t.Fatalf("notice: %q", n)
	}
	if r := run(t, s, `echo ok`, ""); r.out != "ok\n" {
		t.Fatalf("after: %+v", r)
	}
}
