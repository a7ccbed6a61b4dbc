package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestFleetFoldSummaryAndStdin: 200 sessions on 4 real agents, named by one
// target expression. invoke --fold prints identical output once under the
// folded list (which expands back to the 200 targets), two outputs make
// two groups, failures (exit status and connection errors) are in the
// summary, and a 1 MB stdin reaches 20 targets byte-exact.
func TestFleetFoldSummaryAndStdin(t *testing.T) {
	c := NewClient(t)
	var agents []*Agent
	var hosts []string
	for range 4 {
		a := StartAgent(t, AgentOptions{Keys: []string{c.PubKey()}})
		agents = append(agents, a)
		hosts = append(hosts, a.Addr)
	}
	all := strings.Join(hosts, ",")
	c.MustRun("config", "set", all, "MaxShellsPerUser", "60")
	for i := 1; i <= 50; i++ {
		// --no-profile: 200 logins at once race in a profile that rewrites
		// files (this machine's root runs pyenv rehash), and its complaint
		// would be one output that differs.
		c.MustRun("new", "--no-profile", "--name", fmt.Sprintf("j%02d", i), all)
	}
	var exprs []string
	for _, h := range hosts {
		exprs = append(exprs, h+"/j[01-50]")
	}
	fleet := strings.Join(exprs, ",")
	if n := strings.Count(c.MustRun("hosts", fleet), "\n"); n != 200 {
		t.Fatalf("the expression names %d targets, want 200", n)
	}
	header := regexp.MustCompile(`(?m)^(\S+) \((\d+)\)(.*)$`)

	t.Run("identical output once", func(t *testing.T) {
		r := c.Run("invoke", "--fold", fleet, "echo same")
		if r.Code != 0 || strings.Count(r.Stdout, "same\n") != 1 {
			t.Fatalf("exit %d, want 0 and one 'same'\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
		}
		m := header.FindAllStringSubmatch(r.Stdout, -1)
		if len(m) != 1 || m[0][2] != "200" || m[0][3] != "" {
			t.Fatalf("want one group of 200, got %q\n%s", m, r.Stdout)
		}
		// The folded list names exactly the 200 targets.
		if got, want := c.MustRun("hosts", m[0][1]), c.MustRun("hosts", fleet); sortedLines(got) != sortedLines(want) {
			t.Errorf("folded list %s expands to\n%s\nwant\n%s", m[0][1], got, want)
		}
	})

	t.Run("two outputs, failures summarized", func(t *testing.T) {
		c.MustRun("invoke", hosts[1]+"/j[01-50]", "x=1")
		r := c.Run("invoke", "-b", fleet, `echo "v${x:-0}"; exit "${x:-0}"`)
		if r.Code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
		}
		m := header.FindAllStringSubmatch(r.Stdout, -1)
		if len(m) != 2 || m[0][2] != "150" || m[1][2] != "50" || m[1][3] != " exit status 1" {
			t.Fatalf("want groups of 150 and 50 (exit status 1), got %q\n%s", m, r.Stdout)
		}
		if m[1][1] != hosts[1]+"/j[01-50]" {
			t.Errorf("the failing group is %s, want %s/j[01-50]", m[1][1], hosts[1])
		}
		if strings.Count(r.Stdout, "v0\n") != 1 || strings.Count(r.Stdout, "v1\n") != 1 {
			t.Errorf("each output once:\n%s", r.Stdout)
		}
		if !strings.Contains(r.Stderr, "200 targets: 150 succeeded, 50 failed") || !strings.Contains(r.Stderr, hosts[1]+"/j[01-50] (50): exit status 1") {
			t.Errorf("summary:\n%s", r.Stderr)
		}
		c.MustRun("invoke", hosts[1]+"/j[01-50]", "unset x")
	})

	t.Run("stdin to 20 targets", func(t *testing.T) {
		data := make([]byte, 1<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		twenty := strings.Join([]string{hosts[0] + "/j[01-05]", hosts[1] + "/j[01-05]", hosts[2] + "/j[01-05]", hosts[3] + "/j[01-05]"}, ",")
		r := c.RunIn(bytes.NewReader(data), "invoke", twenty, "sha256sum")
		if r.Code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
		}
		if n := strings.Count(r.Stdout, ": "+want+"  -\n"); n != 20 {
			t.Errorf("%d of 20 targets got the stdin byte-exact (sha256 %s):\n%s", n, want, r.Stdout)
		}
		// -n sends none.
		r = c.RunIn(bytes.NewReader(data), "invoke", "-n", "--fold", twenty, "wc -c")
		if !regexp.MustCompile(`\(20\)\n-+\n *0\n`).MatchString(r.Stdout) {
			t.Errorf("-n: want 0 bytes on all 20:\n%s\n%s", r.Stdout, r.Stderr)
		}
	})

	t.Run("connection errors in the summary", func(t *testing.T) {
		agents[3].Stop()
		r := c.Run("invoke", "--fold", fleet, "echo same")
		if r.Code != 255 {
			t.Fatalf("exit %d, want 255\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
		}
		m := header.FindAllStringSubmatch(r.Stdout, -1)
		if len(m) != 2 || m[0][2] != "150" || m[1][2] != "50" || !strings.HasPrefix(m[1][3], " error: ") {
			t.Fatalf("want 150 ok and 50 with an error, got %q\n%s", m, r.Stdout)
		}
		if !strings.Contains(r.Stderr, "200 targets: 150 succeeded, 50 failed") || !strings.Contains(r.Stderr, hosts[3]+"/j[01-50] (50): error: ") {
			t.Errorf("summary:\n%s", r.Stderr)
		}
	})
}

func sortedLines(s string) string {
	l := strings.Fields(s)
	sort.Strings(l)
	return strings.Join(l, "\n")
}
