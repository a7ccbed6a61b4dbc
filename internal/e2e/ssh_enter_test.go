package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSSHEnterVi: `enter ssh://web1/s` runs vi over the remote
// pseudo-terminal (through the user's ssh and the stdio agent), and shares
// the session's state with invoke both ways.
func TestSSHEnterVi(t *testing.T) {
	if _, err := exec.LookPath("vi"); err != nil {
		t.Skip("vi is not installed")
	}
	w := newSSHWorld(t, "")
	c := w.client
	c.MustRun("new", "--name", "s", "ssh://web1")
	c.MustRun("invoke", "ssh://web1/s", "fromInvoke=42")
	file := filepath.Join(w.user.Home, "notes.txt")
	os.Remove(file)
	t.Cleanup(func() { os.Remove(file) })

	tt := enterInTmux(t, c, 100, 30, "ssh://web1/s")
	p := tt.waitPrompt()
	if !strings.Contains(p, "ssh://web1/s") && !strings.Contains(p, "web1/s") {
		t.Fatalf("prompt %q does not name ssh://web1/s", p)
	}
	tt.typeCommand(`echo "got $fromInvoke as $(id -un)"`)
	if !tt.hasLine("got 42 as " + w.user.Name) {
		t.Fatalf("enter does not see invoke's variable as %s:\n%s", w.user.Name, tt.screen())
	}
	tt.typeLine("vi " + file)
	tt.waitFor("vi's empty buffer", func(s string) bool { return strings.Count(s, "\n~") >= 5 })
	tt.keys("i")
	tt.tmux("send-keys", "-l", "typed in vi over ssh")
	tt.keys("Escape")
	tt.typeLine(":wq")
	tt.waitFor("vi to save and quit", func(string) bool {
		b, _ := os.ReadFile(file)
		return string(b) == "typed in vi over ssh\n"
	})
	tt.waitPrompt()
	if fi, err := os.Stat(file); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(w.user.UID) {
		t.Fatalf("vi's file %s is not %s's: %v", file, w.user.Name, err)
	}
	tt.typeLine("clear; stty size")
	tt.waitLine("30 100")
	tt.waitPrompt()
	tt.typeCommand("fromEnter=$(wc -c < " + file + ")")
	tt.typeLine("exit")
	tt.waitLine("TETHER-EXIT=0")
	if got := c.MustRun("invoke", "ssh://web1/s", `echo "$fromEnter"`); strings.TrimSpace(got) != "21" {
		t.Fatalf("invoke after enter: %q, want the variable set in enter (21)", got)
	}
}
