package client

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConfigMayApply: ssh -G is asked only when a config file ssh reads
// (with its Includes) has a line that can change how a host is reached.
func TestConfigMayApply(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", "Host *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n    UserKnownHostsFile /x\n")
	alias := write("alias", "Host web1\n  HostName 10.0.0.1\n")
	write("inc.d-user.conf", "Host *\n  User deploy\n")
	inc := write("inc", "Include "+filepath.Join(dir, "inc.d-*.conf")+"\nHost *\n  ForwardAgent no\n")
	emptyInc := write("emptyinc", "Include "+filepath.Join(dir, "nothing-*.conf")+"\n")
	for _, c := range []struct {
		file string
		want bool
	}{{plain, false}, {alias, true}, {inc, true}, {emptyInc, false}, {filepath.Join(dir, "missing"), false}} {
		if got := configMayApply(c.file); got != c.want {
			t.Errorf("configMayApply(%s) = %v, want %v", filepath.Base(c.file), got, c.want)
		}
	}
}

func TestParseJumpHost(t *testing.T) {
	for in, want := range map[string]string{
		"bastion":                 "bastion",
		"u@bastion:2222":          "u@bastion:2222",
		"ssh://u@[::1]:22":        "u@[::1]:22",
		"tt-nobody@[127.0.0.1]:1": "tt-nobody@127.0.0.1:1",
	} {
		h, err := parseJumpHost(in)
		if err != nil || h.String() != want {
			t.Errorf("parseJumpHost(%q) = %q, %v; want %q", in, h.String(), err, want)
		}
	}
	for _, bad := range []string{"-oProxyCommand=x", "u@h:port"} {
		if _, err := parseJumpHost(bad); err == nil {
			t.Errorf("parseJumpHost(%q) accepted", bad)
		}
	}
}
