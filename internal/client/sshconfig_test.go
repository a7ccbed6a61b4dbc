package client

import (
	"os"
	"path/filepath"
	"slices"
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

func TestConfigKeywordLines(t *testing.T) {
	for _, c := range []struct {
		text string
		want [][2]string
	}{
		{"Host *\n  SendEnv LANG\n", nil},
		{"Host web1\n  HostName 10.0.0.1\n", [][2]string{{"hostname", "10.0.0.1"}}},
		{"  HOSTNAME=10.0.0.1\r\n", [][2]string{{"hostname", "10.0.0.1"}}},
		{"User = deploy", [][2]string{{"user", "deploy"}}},
		{"\tIdentityFile\t~/.ssh/k\n", [][2]string{{"identityfile", "~/.ssh/k"}}},
		{"Include a.conf \"b c.conf\"\nMatch host x\n", [][2]string{{"include", `a.conf "b c.conf"`}, {"match", "host x"}}},
		{"ProxyJump\n", [][2]string{{"proxyjump", ""}}},
		// Not the keyword: a longer word, a comment, a value.
		{"Username x\nUserKnownHostsFile /x\n# User root\nHost user\n", nil},
		{"CanonicalizeHostname yes\nCanonicalizeHostnameX no\n", [][2]string{{"canonicalizehostname", "yes"}}},
	} {
		if got := configKeywordLines(c.text); !slices.Equal(got, c.want) {
			t.Errorf("configKeywordLines(%q) = %q, want %q", c.text, got, c.want)
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
