package cli

import "testing"

// TestSplitRemote: TARGET:PATH for sessions, hosts with ports and target
// expressions; anything starting with / or . (or without a colon) is local.
func TestSplitRemote(t *testing.T) {
	for _, c := range []struct {
		arg, target, path string
		remote            bool
	}{
		{"web1/deploy:conf/app.ini", "web1/deploy", "conf/app.ini", true},
		{"alice@web1:4423/s:/srv/", "alice@web1:4423/s", "/srv/", true},
		{"web1:~/x", "web1", "~/x", true},
		{"web1:", "web1", "", true},
		{"web[01-20]/deploy:/srv/", "web[01-20]/deploy", "/srv/", true},
		{"127.0.0.1:1/c[1-5],127.0.0.1:2/c[1-5]:app.bin", "127.0.0.1:1/c[1-5],127.0.0.1:2/c[1-5]", "app.bin", true},
		{"@web:/etc/motd", "@web", "/etc/motd", true},
		{"./a:b", "", "./a:b", false},
		{"/tmp/a:b", "", "/tmp/a:b", false},
		{"dir/file", "", "dir/file", false},
		{"plain", "", "plain", false},
	} {
		target, p, remote := splitRemote(c.arg)
		if target != c.target || p != c.path || remote != c.remote {
			t.Errorf("splitRemote(%q) = %q, %q, %v; want %q, %q, %v", c.arg, target, p, remote, c.target, c.path, c.remote)
		}
	}
}
