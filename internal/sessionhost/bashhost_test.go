package sessionhost

import (
	"os"
	"strings"
	"time"

	"github.com/tether-sh/tether/internal/limits"
	"testing"

	"github.com/tether-sh/tether/internal/runspace"
	"github.com/tether-sh/tether/internal/wire"
)

func TestBashSessionRuns(t *testing.T) {
	th := startHost(t, func(o *Options) { o.Shell = runspace.KindBash; o.NoProfile = true })
	// stdout and stderr come through separate pipes: each in order,
	// their interleaving not kept.
	hc, _ := th.ok(wire.Request{Op: opRun, Client: laptop, Command: "echo one; echo two >&2; echo three; exit 3"})
	outs := hc.untilExit()
	if got := text(outs); got != "o:one\nthree\ne:two\n" && got != "e:two\no:one\nthree\n" && got != "o:one\ne:two\no:three\n" {
		t.Fatalf("output %q", got)
	}
	if code := exitCodeOf(t, outs[len(outs)-1]); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
}

func TestBashSessionRunsInCgroup(t *testing.T) {
	m := limits.Detect()
	if os.Geteuid() != 0 || m == limits.Rlimit {
		t.Skip("needs root and cgroups")
	}
	g, err := limits.Create(m, limits.GroupID{UID: 0, User: "root", Session: "bashtest", StateDir: t.TempDir()}, -1, -1, limits.Spec{MaxProcesses: 25, MaxMemoryBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy()
	t0 := time.Now()
	defer func() { t.Logf("total %s", time.Since(t0)) }()
	th := startHost(t, func(o *Options) {
		o.Shell = runspace.KindBash
		o.NoProfile = true
		o.LimitsGroup, o.LimitsMechanism = g.Name(), string(m)
		o.Limits = wire.Limits{MaxProcesses: 25, MaxMemoryBytes: 1 << 30}
	})
	t.Logf("started %s", time.Since(t0))
	// bash itself, and so everything it runs, is in the commands' group.
	hc, _ := th.ok(wire.Request{Op: opRun, Client: laptop, Command: "cat /proc/$$/cgroup"})
	outs := hc.untilExit()
	t.Logf("ran %s", time.Since(t0))
	if got := text(outs); !strings.Contains(got, g.Name()+"/cmds") {
		t.Fatalf("bash is not in %s/cmds: %q", g.Name(), got)
	}
}
