package targets

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The same fleet, written as Ansible writes INI and YAML inventories:
// nested children, group vars at several depths, per-host ansible_host,
// ansible_user and ansible_port, a host:port pattern, ranges, ungrouped
// hosts, and tether_port overriding ansible_port.
const iniInventory = `
# ungrouped hosts come first
mail.example.com ansible_user=postfix
[2001:db8::5]:2200

[web]
web[01:03].example.com
web04.example.com ansible_host=10.0.0.4 ansible_port=2222 ansible_user="ops"

[db]
db-[a:b].example.com
db9.example.com:5309 # the old one

[eu:children]
web
db

[eu:vars]
ansible_user=eu-admin

[prod:children]
eu
edge

[prod:vars]
ansible_user=prod-admin
ansible_port=2200

[edge]
edge1 ansible_host=192.0.2.1 tether_port=4423

[all:vars]
ansible_user=root
`

const yamlInventory = `
all:
  hosts:
    mail.example.com:
      ansible_user: postfix
    "2001:db8::5":
      ansible_port: 2200
  vars:
    ansible_user: root
  children:
    prod:
      vars:
        ansible_user: prod-admin
        ansible_port: 2200
      children:
        eu:
          vars:
            ansible_user: eu-admin
          children:
            web:
              hosts:
                web[01:03].example.com:
                web04.example.com:
                  ansible_host: 10.0.0.4
                  ansible_port: 2222
                  ansible_user: ops
            db:
              hosts:
                db-[a:b].example.com:
                db9.example.com:5309:
        edge:
          hosts:
            edge1:
              ansible_host: 192.0.2.1
              tether_port: 4423
`

// wantInventory is what both inventories resolve to.
var wantInventory = map[string][]string{
	"web": {
		"eu-admin@web01.example.com:2200", "eu-admin@web02.example.com:2200", "eu-admin@web03.example.com:2200",
		"ops@10.0.0.4:2222",
	},
	"db": {
		"eu-admin@db-a.example.com:2200", "eu-admin@db-b.example.com:2200", "eu-admin@db9.example.com:5309",
	},
	"edge":      {"prod-admin@192.0.2.1:4423"},
	"ungrouped": {"postfix@mail.example.com", "root@[2001:db8::5]:2200"},
}

func init() {
	w := wantInventory
	w["eu"] = append(append([]string{}, w["web"]...), w["db"]...)
	w["prod"] = append(append([]string{}, w["eu"]...), w["edge"]...)
	w["all"] = append(append([]string{}, w["prod"]...), w["ungrouped"]...)
}

func checkInventory(t *testing.T, inv *Inventory) {
	t.Helper()
	for g, want := range wantInventory {
		got := append([]string(nil), inv.Groups[g]...)
		w := append([]string(nil), want...)
		sort.Strings(got)
		sort.Strings(w)
		if !reflect.DeepEqual(got, w) {
			t.Errorf("group %s:\n got %q\nwant %q", g, got, w)
		}
	}
	if len(inv.Groups) != len(wantInventory) {
		t.Errorf("groups %v", keys(inv.Groups))
	}
	if inv.Hosts["web04.example.com"] != "ops@10.0.0.4:2222" {
		t.Errorf("hosts: %v", inv.Hosts)
	}
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestInventoryINI(t *testing.T) {
	inv, err := ParseInventory([]byte(iniInventory), "hosts")
	if err != nil {
		t.Fatal(err)
	}
	checkInventory(t, inv)
}

func TestInventoryYAML(t *testing.T) {
	inv, err := ParseInventory([]byte(yamlInventory), "inventory")
	if err != nil {
		t.Fatal(err)
	}
	checkInventory(t, inv)
	inv, err = ParseInventory([]byte(yamlInventory), "x.yml")
	if err != nil {
		t.Fatal(err)
	}
	checkInventory(t, inv)
}

// TestInventoryGroupsExpand uses an inventory's groups in expressions.
func TestInventoryGroupsExpand(t *testing.T) {
	inv, err := ParseInventory([]byte(iniInventory), "hosts.ini")
	if err != nil {
		t.Fatal(err)
	}
	g := &Groups{}
	g.AddInventory(inv)
	g.AddExpressions("groups.toml", map[string][]string{"canary": {"@web&@eu", "@edge"}})
	got, err := Expand("@prod!@db", Options{Groups: g})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, wantInventory["web"]...), wantInventory["edge"]...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
	got, err = Expand("@edge/deploy", Options{Groups: g})
	if err != nil || !reflect.DeepEqual(got, []string{"prod-admin@192.0.2.1:4423/deploy"}) {
		t.Fatalf("@edge/deploy: %q %v", got, err)
	}
	got, err = Expand("@canary", Options{Groups: g})
	if err != nil || len(got) != 5 {
		t.Fatalf("@canary: %q %v", got, err)
	}
	if _, err := Expand("@webs", Options{Groups: g}); err == nil || !strings.Contains(err.Error(), "did you mean @web") || !strings.Contains(err.Error(), "hosts.ini") {
		t.Fatalf("unknown: %v", err)
	}
	// Round trip through Fold.
	all, _ := Expand("@all", Options{Groups: g})
	back, err := Expand(Fold(all), Options{})
	if err != nil || !sameSet(back, all) {
		t.Fatalf("Fold(@all) = %s: %v %v", Fold(all), back, err)
	}
}

func TestInventoryErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, msg string }{
		{"a.ini", "[web\nx", "line 1: host \"[web\": '[' without a closing ']'"},
		{"a.ini", "web1 ; comment\n", `";": host variables are KEY=VALUE`},
		{"a.ini", "[web:hostvars]\n", "only :vars and :children"},
		{"a.ini", "[a:children]\nb\n[b:children]\na\n", "cycle: a -> b -> a"},
		{"a.ini", "web1 ansible_port=http\n", `port "http"`},
		{"a.ini", "web1 ansible_port=70000\n", `port "70000"`},
		{"a.ini", "web1 ansible_host=evil,host\n", `address "evil,host"`},
		{"a.ini", "web1 ansible_user=a@b\n", `user "a@b"`},
		{"a.ini", "web1 novalue\n", "KEY=VALUE"},
		{"a.ini", "web1 x='open\n", "unterminated"},
		{"a.ini", "web[1:3\n", "without a closing"},
		{"a.ini", "web[3:1]\n", "backwards"},
		{"a.ini", "web[1:]\n", "no end"},
		{"a.ini", "web[01:3]\n", "padded range"},
		{"a.ini", "web[1:x]\n", "neither numbers nor single letters"},
		{"a.ini", "web[1:200000]\n", "more than 100000 hosts"},
		{"a.ini", "web1:ssh\n", "not a port number"},
		{"a.ini", "[web-]x\n", "a range is [BEGIN:END]"},
		{"a.ini", "[a:children]\nwe%b\n", `group name "we%b"`},
		{"a.yml", "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n", "cycle"},
		{"a.yml", "- a\n- b\n", "mapping of group names"},
		{"a.yml", "all:\n  hosts: [a, b]\n", "hosts: is a mapping"},
		{"a.yml", "all: [\n", "yaml"},
		{"a.json", `{"web": {"hosts": "x"}}`, `group "web"`},
		{"a.json", `{`, "inventory JSON"},
	} {
		_, err := ParseInventory([]byte(tc.text), tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s %q: %v, want %q", tc.name, tc.text, err, tc.msg)
		}
	}
}

// TestInventoryYAMLAliasBomb: nested aliases cannot make the walk blow up.
func TestInventoryYAMLAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 {hosts: {h: }}\n")
	for i := 1; i < 30; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " {children: {")
		b.WriteString("x" + itoa(i) + ": *a" + itoa(i-1) + ", y" + itoa(i) + ": *a" + itoa(i-1) + "}}\n")
	}
	_, err := ParseInventory([]byte(b.String()), "bomb.yml")
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("alias bomb: %v", err)
	}
}

func itoa(i int) string { return string(appendPadded(nil, uint64(i), 0)) }

func TestInventoryJSON(t *testing.T) {
	// The shape of `ansible-inventory --list`, and the old script form.
	data := `{
	  "_meta": {"hostvars": {"w1": {"ansible_host": "10.1.0.1", "ansible_port": 2201, "ansible_user": "ops"}, "w2": {}}},
	  "all": {"children": ["ungrouped", "web"]},
	  "web": {"hosts": ["w1", "w2"], "vars": {"ansible_user": "webadmin"}},
	  "old": ["o1", "o2"],
	  "ungrouped": {"hosts": ["u1"]}
	}`
	inv, err := ParseInventory([]byte(data), "list")
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Groups["web"]; !reflect.DeepEqual(got, []string{"ops@10.1.0.1:2201", "webadmin@w2"}) {
		t.Errorf("web %q", got)
	}
	if got := inv.Groups["old"]; !reflect.DeepEqual(got, []string{"o1", "o2"}) {
		t.Errorf("old %q", got)
	}
	if got := inv.Groups["all"]; len(got) != 5 {
		t.Errorf("all %q", got)
	}
}

// TestInventoryMatchesAnsible parses both test inventories with the real
// ansible-inventory and checks that its --list JSON, read by Tether,
// resolves to the same targets as Tether's own INI and YAML parsers.
func TestInventoryMatchesAnsible(t *testing.T) {
	bin, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Skip("ansible-inventory is not installed (apt-get install ansible-core)")
	}
	dir := t.TempDir()
	for _, f := range []struct{ name, text string }{{"hosts.ini", iniInventory}, {"hosts.yml", yamlInventory}} {
		p := filepath.Join(dir, f.name)
		writeFile(t, p, f.text)
		cmd := exec.Command(bin, "-i", p, "--list")
		cmd.Env = append(os.Environ(), "ANSIBLE_LOCAL_TEMP="+dir, "ANSIBLE_HOME="+dir, "ANSIBLE_INVENTORY_UNPARSED_FAILED=true")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: ansible-inventory: %v\n%s", f.name, err, out)
		}
		inv, err := ParseInventory(out, "ansible-inventory --list")
		if err != nil {
			t.Fatalf("%s: %v\n%s", f.name, err, out)
		}
		checkInventory(t, inv)
	}
}
