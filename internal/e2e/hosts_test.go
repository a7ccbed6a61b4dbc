package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostsCommand runs the real binary's `tether hosts` with a
// groups.toml, an Ansible inventory (flag, $TETHER_INVENTORY and
// $TETHER_INVENTORY_CMD), a host file and exclusions.
func TestHostsCommand(t *testing.T) {
	c := NewClient(t)
	cfg := filepath.Join(c.Home, ".config", "tether")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(cfg, "groups.toml"), `
web = ["web[01-03]", "@lb"]
lb = "lb[1-2]"
canary = ["@web&web0[1-2]", "@edge"]
`)
	inv := filepath.Join(c.Home, "inventory.ini")
	write(inv, `
[edge]
edge[1:2] ansible_host=127.0.0.1 ansible_user=ops

[edge:vars]
tether_port=4423
`)
	hostsFile := filepath.Join(c.Home, "fleet")
	write(hostsFile, "# the fleet\n@web/deploy\ndb[1-2]   # databases\n")

	lines := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"hosts", "web[01-03]/deploy"}, nil, "web01/deploy web02/deploy web03/deploy"},
		{[]string{"hosts", "--fold", "web01/deploy,web02/deploy,web03/deploy,web07/deploy"}, nil, "web[01-03,07]/deploy"},
		{[]string{"hosts", "rack[1-2]-n[01-02]"}, nil, "rack1-n01 rack1-n02 rack2-n01 rack2-n02"},
		{[]string{"hosts", "@web!lb1"}, nil, "web01 web02 web03 lb2"},
		{[]string{"hosts", "-x", "web02", "-x", "@lb", "@web"}, nil, "web01 web03"},
		{[]string{"hosts", "--fold", "@web"}, nil, "lb[1-2],web[01-03]"},
		{[]string{"hosts", "-f", hostsFile}, nil, "web01/deploy web02/deploy web03/deploy lb1/deploy lb2/deploy db1 db2"},
		{[]string{"hosts", "-f", hostsFile, "-x", "web0[1-3]", "extra"}, nil, "extra lb1/deploy lb2/deploy db1 db2"},
		{[]string{"hosts", "--hostfile", hostsFile, "--fold"}, nil, "db[1-2],lb[1-2]/deploy,web[01-03]/deploy"},
		{[]string{"hosts"}, []string{"TETHER_HOSTS=" + hostsFile}, "web01/deploy web02/deploy web03/deploy lb1/deploy lb2/deploy db1 db2"},
		{[]string{"hosts", "--inventory", inv, "@edge"}, nil, "ops@127.0.0.1:4423"},
		{[]string{"hosts", "@canary"}, []string{"TETHER_INVENTORY=" + inv}, "web01 web02 ops@127.0.0.1:4423"},
	} {
		c.Env = tc.env
		r := c.Run(tc.args...)
		if r.Code != 0 || lines(r.Stdout) != tc.want {
			t.Errorf("tether %s: exit %d\nstdout %q\nstderr %s\nwant %q", strings.Join(tc.args, " "), r.Code, r.Stdout, r.Stderr, tc.want)
		}
	}

	// Two hosts of the inventory resolve to the same address: listed once.
	c.Env = nil
	if out := c.MustRun("hosts", "--inventory", inv, "@all"); out != "ops@127.0.0.1:4423\n" {
		t.Errorf("@all: %q", out)
	}

	// Errors: before anything runs, naming the bad part.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"hosts", "web[1-]"}, `range "1-" has no end`},
		{[]string{"hosts", "web[3-1]"}, `range "3-1" goes backwards; write 1-3`},
		{[]string{"hosts", "web[a-c]"}, `"a" is not a decimal number`},
		{[]string{"hosts", "web[1-3"}, "'[' without a closing ']'"},
		{[]string{"hosts", "n[1-200000]"}, "more than the cap of 100000 (see docs/targets.md"},
		{[]string{"hosts", "@wbe"}, "did you mean @web?"},
		{[]string{"hosts", "web1!web1"}, "matches no targets"},
		{[]string{"hosts"}, "no targets: give a target expression"},
		{[]string{"hosts", "--inventory", filepath.Join(c.Home, "nope.ini"), "x"}, "no such file"},
		{[]string{"hosts", "-f", filepath.Join(c.Home, "nope"), "x"}, "no such file"},
	} {
		r := c.Run(tc.args...)
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("tether %s: exit %d stdout %q stderr %q, want an error saying %q", strings.Join(tc.args, " "), r.Code, r.Stdout, r.Stderr, tc.msg)
		}
	}

	// A cycle in groups.toml is printed.
	write(filepath.Join(cfg, "groups.toml"), "a = [\"@b\"]\nb = [\"x1\", \"@a\"]\n")
	if r := c.Run("hosts", "@a"); r.Code == 0 || !strings.Contains(r.Stderr, "@a -> @b -> @a") {
		t.Errorf("cycle: exit %d stderr %q", r.Code, r.Stderr)
	}
	write(filepath.Join(cfg, "groups.toml"), "a = 3\n")
	if r := c.Run("hosts", "x"); r.Code == 0 || !strings.Contains(r.Stderr, "groups.toml") {
		t.Errorf("bad groups.toml: exit %d stderr %q", r.Code, r.Stderr)
	}
	os.Remove(filepath.Join(cfg, "groups.toml"))

	// TETHER_INVENTORY_CMD: the JSON of ansible-inventory --list, from any
	// command; with the real ansible-inventory when it is installed.
	listJSON := filepath.Join(c.Home, "list.json")
	write(listJSON, `{"_meta":{"hostvars":{"w1":{"ansible_port":2201}}},"all":{"children":["web"]},"web":{"hosts":["w1","w2"]}}`)
	c.Env = []string{"TETHER_INVENTORY_CMD=cat " + listJSON}
	if out := c.MustRun("hosts", "@web"); out != "w1:2201\nw2\n" {
		t.Errorf("TETHER_INVENTORY_CMD: %q", out)
	}
	c.Env = []string{"TETHER_INVENTORY_CMD=exit 3"}
	if r := c.Run("hosts", "x"); r.Code == 0 || !strings.Contains(r.Stderr, "TETHER_INVENTORY_CMD") {
		t.Errorf("failing TETHER_INVENTORY_CMD: exit %d stderr %q", r.Code, r.Stderr)
	}
	if bin, err := exec.LookPath("ansible-inventory"); err == nil {
		c.Env = []string{"TETHER_INVENTORY_CMD=" + bin + " -i " + inv + " --list", "ANSIBLE_HOME=" + c.Home, "ANSIBLE_LOCAL_TEMP=" + c.Home}
		if out := c.MustRun("hosts", "--fold", "@edge"); out != "ops@127.0.0.1:4423\n" {
			t.Errorf("ansible-inventory --list: %q", out)
		}
	} else {
		t.Log("ansible-inventory is not installed: delegation checked with cat only")
	}
}
