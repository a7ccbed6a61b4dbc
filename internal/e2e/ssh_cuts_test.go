package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hashWriter hashes and counts what is written to it (20 MB of output is
// not kept in memory or searched for newlines on every poll).
type hashWriter struct {
	mu sync.Mutex
	h  hash.Hash
	n  int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

func (w *hashWriter) count() int64 { w.mu.Lock(); defer w.mu.Unlock(); return w.n }

func (w *hashWriter) sum() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return hex.EncodeToString(w.h.Sum(nil))
}

// cutChunks × cutPerChunk numbers from seq are a little over 20 MiB; the
// remote prints them a chunk at a time with a pause, so the transfer lasts
// long enough for 20 cuts.
const (
	cutChunks   = 200
	cutPerChunk = 14000
	cutKills    = 20
)

// cutScript prints seq 1 cutChunks*cutPerChunk in paced chunks, holding
// the last one back until the file release exists: however slow the cuts
// are under load, the command cannot end before all of them landed.
func cutScript(release string) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do if [ $i -eq %d ]; then while [ ! -e %s ]; do sleep 0.05; done; fi; seq $((i*%d+1)) $((i*%d+%d)); sleep 0.03; i=$((i+1)); done`,
		cutChunks, cutChunks-1, release, cutPerChunk, cutPerChunk, cutPerChunk)
}

// cutWant is the SHA-256 and size of cutScript's output, made here.
func cutWant(t *testing.T) (string, int64) {
	out, err := exec.Command("seq", "1", fmt.Sprint(cutChunks*cutPerChunk)).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(out)
	return hex.EncodeToString(s[:]), int64(len(out))
}

// runCut runs cutScript in ssh://web1/s and calls cut (which returns the
// pids it killed, or none when there was nothing to kill yet) after each
// further MB of output, cutKills times; the output must hash equal.
func runCut(t *testing.T, w *sshWorld, what string, cut func(invoke int) int) {
	t.Helper()
	c := w.client
	// The invoke's own ssh process is what is cut: no tether master (the
	// default for ssh:// hosts) between it and the host.
	c.Env = append(c.Env, "TETHER_CONTROL_PERSIST=0")
	c.MustRun("new", "--name", "s", "ssh://web1")
	want, size := cutWant(t)
	if size < 20<<20 {
		t.Fatalf("the transfer is %d bytes, want at least 20 MB", size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// In /tmp, which the remote user can read (the test's own dirs are 0700).
	release := filepath.Join(os.TempDir(), fmt.Sprintf("tether-cut-release-%d-%d", os.Getpid(), time.Now().UnixNano()))
	t.Cleanup(func() { os.Remove(release) })
	cmd := c.Command(ctx, "invoke", "ssh://web1/s", cutScript(release))
	out := &hashWriter{h: sha256.New()}
	var errb SyncBuffer
	cmd.Stdout, cmd.Stderr = out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	kills := 0
	step := size / (cutKills + 2)
	for kills < cutKills {
		next := int64(kills+1) * step
		// Each cut lands on a resumed connection: after the client said it
		// reconnected from the last one, and past another step of output.
		WaitFor(t, time.Minute, fmt.Sprintf("output past %d bytes after reconnect %d (cut %d)", next, kills, kills+1), func() bool {
			return (out.count() >= next && strings.Count(errb.String(), "reconnected") >= kills) || out.count() >= size
		})
		if out.count() >= size {
			break
		}
		var n int
		WaitFor(t, 30*time.Second, what+" to kill", func() bool {
			n = cut(cmd.Process.Pid)
			return n > 0 || out.count() >= size
		})
		if n == 0 {
			break
		}
		kills++
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatalf("invoke did not end after %d cuts; %d of %d bytes\nstderr: %s", kills, out.count(), size, errb.String())
	}
	if err != nil {
		t.Fatalf("invoke after %d cuts: %v\nstderr: %s", kills, err, errb.String())
	}
	if kills < cutKills {
		t.Fatalf("only %d of %d cuts landed before the command ended; make it longer", kills, cutKills)
	}
	if got := out.sum(); got != want || out.count() != size {
		t.Fatalf("after %d cuts: %d bytes SHA-256 %s, want %d bytes %s\nstderr: %s", kills, out.count(), got, size, want, errb.String())
	}
	if n := strings.Count(errb.String(), "reconnected"); n < cutKills {
		t.Errorf("stderr says it reconnected %d times, want %d: %s", n, cutKills, errb.String())
	}
	// The session and its state remain.
	c.MustRun("invoke", "ssh://web1/s", "v=kept")
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $v"); got != "kept\n" {
		t.Fatalf("after the cuts: %q", got)
	}
}

// connProcs are the processes of sshd's connections: the listener's
// children ("sshd: USER [priv]") and theirs ("sshd: USER@notty", which
// holds the TCP connection and lives on alone if only its parent dies).
func (s *SSHD) connProcs() []int {
	var out []int
	for _, p := range childrenNamed(s.cmd.Process.Pid, "sshd") {
		out = append(out, p)
		out = append(out, childrenNamed(p, "sshd")...)
	}
	return out
}

// killAll SIGKILLs pids and says how many there were.
func killAll(pids []int) int {
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	return len(pids)
}

// TestSSHClientKilledResumes: the ssh client process under a running
// invoke is killed 20 times during a 20 MB transfer; the client runs ssh
// again each time and the bytes arrive whole, exactly once (hash equal).
func TestSSHClientKilledResumes(t *testing.T) {
	w := newSSHWorld(t, "")
	runCut(t, w, "the invoke's ssh process", func(invoke int) int {
		return killAll(childrenNamed(invoke, "ssh"))
	})
}

// TestSSHSessionProcessKilledResumes: sshd's per-connection processes
// (which serve Tether's master and every command multiplexed over it) are killed 20 times during a 20 MB
// transfer; the bytes arrive whole, exactly once.
func TestSSHSessionProcessKilledResumes(t *testing.T) {
	w := newSSHWorld(t, "")
	runCut(t, w, "sshd's session process", func(int) int {
		return killAll(w.sshd.connProcs())
	})
}

// TestSSHRestartSSHD: the whole private sshd is stopped (listener and
// every connection's process) and started again on the same port with the
// same host key while a command prints; the command's output arrives whole
// and the session and its state remain.
func TestSSHRestartSSHD(t *testing.T) {
	w := newSSHWorld(t, "")
	c := w.client
	c.MustRun("new", "--name", "s", "ssh://web1")
	c.MustRun("invoke", "ssh://web1/s", "x=before; cd /tmp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 400
	cmd := c.Command(ctx, "invoke", "ssh://web1/s", fmt.Sprintf(`for i in $(seq 1 %d); do echo $i; sleep 0.01; done`, n))
	var out, errb SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "some output", func() bool { return strings.Count(out.String(), "\n") > 20 })
	conns := w.sshd.connProcs()
	w.sshd.Stop()
	killAll(conns)
	w.sshd.start()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("invoke across the sshd restart: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "reconnected") {
		t.Errorf("the restart did not cut the command (no reconnect): %s", errb.String())
	}
	if out.String() != seq(n) {
		t.Fatalf("output across the restart is not 1..%d exactly once:\n%s\nstderr: %s", n, out.String(), errb.String())
	}
	if got := c.MustRun("invoke", "ssh://web1/s", "echo $x $PWD"); got != "before /tmp\n" {
		t.Fatalf("state after the sshd restart: %q", got)
	}
	if !strings.Contains(c.MustRun("list", "ssh://web1"), "ssh://web1/s") {
		t.Fatal("the session is gone from list after the restart")
	}
}
