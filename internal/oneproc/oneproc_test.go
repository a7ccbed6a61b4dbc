package oneproc

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestServer(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"invoke", "h/s", "true"}, false},
		{[]string{"-i", "k", "serve", "--listen", ":0"}, true},
		{[]string{"session-host"}, true},
		{[]string{"mux-master", "--persist", "1m", "h"}, true},
		{[]string{"sftp-server"}, true},
		{[]string{"version"}, false},
	} {
		if got := Server(c.args); got != c.want {
			t.Errorf("Server(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// The test binary itself is a process this package started: without
// GOMAXPROCS in the environment and no server command among its arguments,
// it runs on one processor until Restore. A child re-run with GOMAXPROCS
// set is left alone.
func TestStartsOnOneProcessor(t *testing.T) {
	if os.Getenv("ONEPROC_CHILD") != "" {
		// Run with GOMAXPROCS=3 by the parent.
		if n := runtime.GOMAXPROCS(0); n != 3 {
			t.Fatalf("GOMAXPROCS=3 in the environment: runs on %d processors", n)
		}
		return
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		t.Skip("GOMAXPROCS is set")
	}
	if procs < 2 {
		t.Skip("the runtime chose one processor")
	}
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("started on %d processors, want 1", n)
	}
	Restore()
	if n := runtime.GOMAXPROCS(0); n != procs || !Restored() {
		t.Fatalf("after Restore: %d processors, want %d", n, procs)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartsOnOneProcessor$")
	cmd.Env = append(os.Environ(), "ONEPROC_CHILD=1", "GOMAXPROCS=3")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v: %s", err, out)
	}
}
