package bash

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/tstest"
)

func needBash(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("bash")
	if err != nil || !Available(p) {
		t.Skip("no bash >= 4 on this host")
	}
	return p
}

func newShell(t testing.TB, opts Options) *Shell {
	t.Helper()
	needBash(t)
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	if opts.KillGrace == 0 {
		opts.KillGrace = 300 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type result struct {
	out, err string
	code     int
}

func run(t testing.TB, s *Shell, script, stdin string) result {
	t.Helper()
	var o, e tstest.SyncBuffer
	st := runspace.Streams{Stdout: &o, Stderr: &e}
	if stdin != "" {
		st.Stdin = strings.NewReader(stdin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := s.Run(ctx, script, st)
	if err != nil {
		t.Fatalf("Run(%q): %v", script, err)
	}
	return result{o.String(), e.String(), code}
}

func TestBasic(t *testing.T) {
	s := newShell(t, Options{NoProfile: true})
	if r := run(t, s, "echo hi; echo err >&2; x=5", ""); r.out != "hi\n" || r.err != "err\n" || r.code != 0 {
		t.Fatalf("got %+v", r)
	}
	if r := run(t, s, "echo $x; false", ""); r.out != "5\n" || r.code != 1 {
		t.Fatalf("got %+v", r)
	}
	if r := run(t, s, "echo $?", ""); r.out != "1\n" {
		t.Fatalf("$? of the previous command: got %+v", r)
	}
	if r := run(t, s, "cat; echo done", "abc"); r.out != "abcdone\n" {
		t.Fatalf("stdin: got %+v", r)
	}
	if n := s.Notices(); n != "" {
		t.Fatalf("notices: %q", n)
	}
}

var _ = bytes.Compare
