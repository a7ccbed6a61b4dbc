package client

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRegistryConcurrentAdds(t *testing.T) {
	r := &Registry{Path: filepath.Join(t.TempDir(), "tether", "sessions.json")}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Add(fmt.Sprintf("u@h:%d/s", 1000+i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := r.List()
	if err != nil || len(got) != 20 {
		t.Fatalf("%d entries, %v", len(got), err)
	}
	r.Remove("u@h:1000/s")
	got, _ = r.List()
	if len(got) != 19 {
		t.Fatalf("after remove: %d", len(got))
	}
}

func TestRegistryDamagedFileIsNotOverwritten(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sessions.json")
	os.WriteFile(p, []byte("{not json"), 0o600)
	r := &Registry{Path: p}
	if err := r.Add("h/s"); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{not json" {
		t.Fatal("damaged registry was overwritten")
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"web1", "web1", ""},
		{"alice@web1:2222/deploy", "alice@web1:2222/deploy", ""},
		{"web1:4422", "web1", ""},
		{"[::1]:4423/s", "[::1]:4423/s", ""},
		{"[::1]", "[::1]", ""},
		{"::1", "", "brackets"},
		{"web1:0", "", "port"},
		{"web1:x", "", "port"},
		{"web1/", "", "nothing after"},
		{"@web1", "", "empty user"},
		{"", "", "empty address"},
		{"/s", "", "no host"},
	} {
		got, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseRegistry(f *testing.F) {
	f.Add([]byte(`{"sessions":[{"address":"u@h/s","created":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseRegistry(b)
	})
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"web1", "a@b:1/c", "[::1]:9/x", "a,b,,c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		again, err := ParseTarget(tg.String())
		if err != nil || again != tg {
			t.Fatalf("%q -> %q -> %+v %v", s, tg.String(), again, err)
		}
	})
}

func TestRegistryUnchangedIsNotRewritten(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sessions.json")
	r := &Registry{Path: p}
	if err := r.Add("u@h:1/a", "u@h:1/b"); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// Adding what is there and removing what is not leave the file alone
	// (no new file renamed over it, so no fsync on a command's path).
	if err := r.Add("u@h:1/b", "u@h:1/a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove("u@h:1/c"); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("the registry was rewritten without a change")
	}
	if err := r.Remove("u@h:1/a"); err != nil {
		t.Fatal(err)
	}
	got, _ := r.List()
	if len(got) != 1 || got[0].Address != "u@h:1/b" {
		t.Fatalf("after remove: %v", got)
	}
}

func TestParseSSHTarget(t *testing.T) {
	for _, c := range []struct {
		in, host, user string
		port           int
		sess           string
	}{
		{"ssh://web1", "web1", "", 0, ""},
		{"ssh://bob@web1:2222/s", "web1", "bob", 2222, "s"},
		{"ssh://web1:4422/x", "web1", "", 4422, "x"},
		{"ssh://[::1]/s", "::1", "", 0, "s"},
	} {
		tg, err := ParseTarget(c.in)
		if err != nil || !tg.SSH || tg.Host != c.host || tg.User != c.user || tg.Port != c.port || tg.Session != c.sess {
			t.Errorf("ParseTarget(%q) = %+v, %v", c.in, tg, err)
			continue
		}
		if tg.String() != c.in || tg.WithUser("me").String() != c.in {
			t.Errorf("%q prints as %q / %q", c.in, tg.String(), tg.WithUser("me").String())
		}
	}
	if _, err := ParseTarget("ssh://-oProxyCommand=x"); err == nil {
		t.Error("ssh://-o… accepted")
	}
	SetBareHostsSSH(true)
	defer SetBareHostsSSH(false)
	if tg, err := ParseTarget("web1/s"); err != nil || tg.String() != "ssh://web1/s" {
		t.Errorf("bare host with ssh transport: %v %v", tg, err)
	}
}
