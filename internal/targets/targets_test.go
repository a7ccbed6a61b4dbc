package targets

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	groups := &Groups{}
	if err := groups.AddExpressions("groups.toml", map[string][]string{
		"web":    {"web[01-03]"},
		"db":     {"db[1-2]", "dbx"},
		"prod":   {"@web", "@db", "lb1"},
		"rack1":  {"r1n[1-2]"},
		"rack2":  {"r2n[1-2]"},
		"empty":  {},
		"nested": {"@prod!@db"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr string
		want string // space-separated
	}{
		{"web1", "web1"},
		{"web[01-03]", "web01 web02 web03"},
		{"web[1-3]", "web1 web2 web3"},
		{"db[1-3,7]", "db1 db2 db3 db7"},
		{"n[1-10/2]", "n1 n3 n5 n7 n9"},
		{"n[000-012/4]", "n000 n004 n008 n012"},
		{"n[1-2/5]", "n1"},
		{"n[08-11]", "n08 n09 n10 n11"},
		{"n[01-100]", "n01 n02 n03 n04 n05 n06 n07 n08 n09 n10 n11 n12 n13 n14 n15 n16 n17 n18 n19 n20 n21 n22 n23 n24 n25 n26 n27 n28 n29 n30 n31 n32 n33 n34 n35 n36 n37 n38 n39 n40 n41 n42 n43 n44 n45 n46 n47 n48 n49 n50 n51 n52 n53 n54 n55 n56 n57 n58 n59 n60 n61 n62 n63 n64 n65 n66 n67 n68 n69 n70 n71 n72 n73 n74 n75 n76 n77 n78 n79 n80 n81 n82 n83 n84 n85 n86 n87 n88 n89 n90 n91 n92 n93 n94 n95 n96 n97 n98 n99 n100"},
		{"n[01-03,7,10]", "n01 n02 n03 n7 n10"},
		{"n[0-2]", "n0 n1 n2"},
		{"[1-3]", "1 2 3"},
		{"node-00[1-2]0", "node-0010 node-0020"},
		{"rack[1-2]-n[01-02]", "rack1-n01 rack1-n02 rack2-n01 rack2-n02"},
		{"web[01-03]/deploy", "web01/deploy web02/deploy web03/deploy"},
		{"web1/s[1-2]", "web1/s1 web1/s2"},
		{"user@web[1-3]:4422/s", "user@web1:4422/s user@web2:4422/s user@web3:4422/s"},
		{"ssh://web[1-3]/s", "ssh://web1/s ssh://web2/s ssh://web3/s"},
		{"ssh://u@web[1-2]:22", "ssh://u@web1:22 ssh://u@web2:22"},
		{"[::1]:4422/s", "[::1]:4422/s"},
		{"u@[fe80::1]", "u@[fe80::1]"},
		{"[::1],[::2]", "[::1] [::2]"},
		{"10.0.0.[1-3]", "10.0.0.1 10.0.0.2 10.0.0.3"},
		// Set operations, left to right.
		{"a,b,a", "a b"},
		{"a,,b,", "a b"},
		{" a , b ", "a b"},
		{"web[1-5]!web3", "web1 web2 web4 web5"},
		{"web[1-5]!web[2-4]", "web1 web5"},
		{"web[1-5]&web[4-9]", "web4 web5"},
		{"web[1-5]!web3,web3", "web1 web2 web4 web5 web3"},
		{"web[1-5],web7!web[1-4]", "web5 web7"},
		{"web[1-3]/s!web2", "web1/s web3/s"},   // excluding a host excludes its sessions
		{"web[1-3]/s!web2/s", "web1/s web3/s"}, // and a session by name
		{"web[1-3]/s!web2/other", "web1/s web2/s web3/s"},
		// Groups.
		{"@web", "web01 web02 web03"},
		{"@prod", "web01 web02 web03 db1 db2 dbx lb1"},
		{"@prod!@web", "db1 db2 dbx lb1"},
		{"@prod&@db", "db1 db2 dbx"},
		{"@nested", "web01 web02 web03 lb1"},
		{"@web/deploy", "web01/deploy web02/deploy web03/deploy"},
		{"@web/s[1-2]", "web01/s1 web01/s2 web02/s1 web02/s2 web03/s1 web03/s2"},
		{"@rack[1-2]", "r1n1 r1n2 r2n1 r2n2"},
		{"@empty,x", "x"},
	} {
		got, err := Expand(tc.expr, Options{Groups: groups})
		if err != nil {
			t.Errorf("Expand(%q): %v", tc.expr, err)
			continue
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("Expand(%q)\n got %s\nwant %s", tc.expr, g, tc.want)
		}
	}
}

func TestExpandExclude(t *testing.T) {
	got, err := ExpandAll([]string{"web[1-5]/s", "db1"}, Options{Exclude: []string{"web[2-3]", "db1"}})
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Join(got, " "); g != "web1/s web4/s web5/s" {
		t.Fatalf("got %s", g)
	}
	_, err = Expand("web[1-2]", Options{Exclude: []string{"web[1-2]"}})
	if !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), "after excluding web[1-2]") {
		t.Fatalf("all excluded: %v", err)
	}
	_, err = Expand("web1", Options{Exclude: []string{"web[1-]"}})
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "excluded targets") {
		t.Fatalf("bad exclusion: %v", err)
	}
}

// TestExpandErrors covers every malformed example: each fails before
// anything runs, with the right kind and a message naming the bad part.
func TestExpandErrors(t *testing.T) {
	groups := &Groups{}
	groups.AddExpressions("/home/u/.config/tether/groups.toml", map[string][]string{
		"web":      {"web1"},
		"webapp":   {"app1"},
		"a":        {"@b"},
		"b":        {"x1", "@c"},
		"c":        {"@a"},
		"self":     {"@self"},
		"bad":      {"web[1-"},
		"huge":     {"h[1-60000]"},
		"huge2":    {"@huge,g[1-60000]"},
		"dbserver": {"db1"},
	})
	for _, tc := range []struct {
		expr string
		kind error
		msg  string // must appear in the error
	}{
		{"web[1-]", ErrSyntax, `"1-" has no end`},
		{"web[-3]", ErrSyntax, `"-3" has no start`},
		{"web[3-1]", ErrSyntax, `"3-1" goes backwards; write 1-3`},
		{"web[a-c]", ErrSyntax, `"a" is not a decimal number`},
		{"web[1-c]", ErrSyntax, `"c" is not a decimal number`},
		{"web[1", ErrSyntax, `"[1": '[' without a closing ']'`},
		{"web[1-3", ErrSyntax, "without a closing ']'"},
		{"web1]", ErrSyntax, `"web1]": ']' without a '['`},
		{"web[1-3]]", ErrSyntax, "']' without a '['"},
		{"web[[1-3]]", ErrSyntax, "cannot nest"},
		{"web[]", ErrSyntax, "empty range []"},
		{"web[1,,2]", ErrSyntax, "empty element"},
		{"web[1-3/0]", ErrSyntax, "step of 0"},
		{"web[1-3/x]", ErrSyntax, `step "x"`},
		{"web[5/2]", ErrSyntax, "a step needs a range"},
		{"web[01-3]", ErrSyntax, "mixes widths"},
		{"web[1-03]", ErrSyntax, "pads only its end"},
		{"web[001-05]", ErrSyntax, "mixes widths"},
		{"web[1-2-3]", ErrSyntax, `"2-3" is not a decimal number`},
		{"web1 web2", ErrSyntax, "cannot contain spaces"},
		{"!web1", ErrSyntax, `needs a set on its left`},
		{"&web1", ErrSyntax, `needs a set on its left`},
		{"web1!", ErrSyntax, `nothing after '!'`},
		{"web1&", ErrSyntax, `nothing after '&'`},
		{"@", ErrSyntax, "no group name"},
		{"@web/", ErrSyntax, "nothing after '/'"},
		{"@we*b", ErrSyntax, "a group name is"},
		{"", ErrEmpty, "matches no targets"},
		{",", ErrEmpty, "matches no targets"},
		{"web1!web1", ErrEmpty, "matches no targets"},
		{"web1&web2", ErrEmpty, "matches no targets"},
		{"web[1-3]&web2/s", ErrEmpty, "matches no targets"}, // intersection is exact
		{"web[1-100001]", ErrTooMany, "expands to 100001 targets, more than the cap of 100000 (see docs/targets.md"},
		{"n[1-1000]-m[1-1000]", ErrTooMany, "expands to 1000000 targets"},
		{"n[1-999999999]", ErrTooMany, "more than the cap"},
		{"n[1-9999999999]", ErrTooMany, "more than 9 digits"},
		{"n[1-60000],m[1-60000]", ErrTooMany, "more than the cap of 100000"},
		{"@huge2", ErrTooMany, "more than the cap"},
		{"@wbe", ErrUnknownGroup, "did you mean @web"},
		{"@dbservers", ErrUnknownGroup, "did you mean @dbserver"},
		{"@zzzzzz", ErrUnknownGroup, "groups come from /home/u/.config/tether/groups.toml"},
		{"@a", ErrGroupCycle, "@a -> @b -> @c -> @a"},
		{"@self", ErrGroupCycle, "@self -> @self"},
		{"@bad", ErrSyntax, `in group @bad (/home/u/.config/tether/groups.toml)`},
		{"@web/x!@web/x,@x", ErrUnknownGroup, "@x"},
	} {
		_, err := Expand(tc.expr, Options{Groups: groups})
		if err == nil {
			t.Errorf("Expand(%q) = nil error, want %v", tc.expr, tc.kind)
			continue
		}
		if !errors.Is(err, tc.kind) {
			t.Errorf("Expand(%q): %v is not %v", tc.expr, err, tc.kind)
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Expand(%q): %q does not say %q", tc.expr, err, tc.msg)
		}
	}
	// No groups at all: the error says where groups come from.
	_, err := Expand("@web", Options{})
	if !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), "groups.toml") || !strings.Contains(err.Error(), "--inventory") {
		t.Fatalf("no groups: %v", err)
	}
	// A group defined by two sources is an error when used.
	two := &Groups{}
	two.AddExpressions("a.toml", map[string][]string{"web": {"w1"}, "x": {"x1"}})
	two.AddExpressions("b.toml", map[string][]string{"web": {"w2"}})
	if _, err := Expand("@web", Options{Groups: two}); err == nil || !strings.Contains(err.Error(), "more than one place (a.toml, b.toml)") {
		t.Fatalf("ambiguous group: %v", err)
	}
	if got, err := Expand("@x", Options{Groups: two}); err != nil || got[0] != "x1" {
		t.Fatalf("unambiguous group beside an ambiguous one: %v %v", got, err)
	}
	// The cap is configurable.
	if _, err := Expand("n[1-11]", Options{Max: 10}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("Max 10: %v", err)
	}
	if got, _ := Expand("n[1-10]", Options{Max: 10}); len(got) != 10 {
		t.Fatalf("Max 10 allows 10: %d", len(got))
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		in   string // space-separated
		want string
	}{
		{"web1", "web1"},
		{"web1 web2 web3", "web[1-3]"},
		{"web01 web02 web03 web07", "web[01-03,07]"},
		{"web01/deploy web02/deploy web03/deploy web07/deploy", "web[01-03,07]/deploy"},
		{"web3 web1 web2 web2", "web[1-3]"},
		{"n08 n09 n10 n11", "n[08-11]"},
		{"n8 n9 n10 n11", "n[8-11]"},
		{"n9 n09 n10", "n[9,09-10]"},
		{"n1 n01", "n[1,01]"},
		{"n001 n002 n003 n005", "n[001-003,005]"},
		{"rack1-n01 rack1-n02 rack2-n01 rack2-n02", "rack[1-2]-n[01-02]"},
		{"rack1-n01 rack1-n02 rack2-n01", "rack1-n02,rack[1-2]-n01"},
		{"a1b1 a2b2", "a1b1,a2b2"},
		{"alpha beta alpha", "alpha,beta"},
		{"web2 web10 db1 web1", "db1,web[1-2,10]"},
		{"u@web1:4422/s u@web2:4422/s", "u@web[1-2]:4422/s"},
		{"[::1]:4422 [::2]:4422", "[::1]:4422,[::2]:4422"},
		{"10.0.0.1 10.0.0.2 10.0.1.1 10.0.1.2", "10.0.[0-1].[1-2]"},
		{"x1234567890 x1234567891", "x1234567890,x1234567891"},
		{"ssh://web1/s ssh://web2/s", "ssh://web[1-2]/s"},
	} {
		in := strings.Fields(tc.in)
		got := Fold(in)
		if got != tc.want {
			t.Errorf("Fold(%s) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := Expand(got, Options{})
		if err != nil {
			t.Errorf("Expand(Fold(%s)) = %v", tc.in, err)
			continue
		}
		if !sameSet(back, in) {
			t.Errorf("Expand(Fold(%s)) = %v", tc.in, back)
		}
	}
	if Fold(nil) != "" {
		t.Error("Fold(nil) is not empty")
	}
}

// TestFoldMultiDimShortest checks that Fold tries more than one order of
// folding numeric fields and keeps the shorter.
func TestFoldMultiDimShortest(t *testing.T) {
	var in []string
	for r := 1; r <= 3; r++ {
		for n := 1; n <= 40; n++ {
			in = append(in, fmt.Sprintf("r%d-n%02d", r, n))
		}
	}
	if got := Fold(in); got != "r[1-3]-n[01-40]" {
		t.Fatalf("got %s", got)
	}
	// Varying the first field only: folding it first gives one pattern.
	in = []string{"a1-b1", "a2-b1", "a3-b1", "a1-b5"}
	got := Fold(in)
	back, _ := Expand(got, Options{})
	if !sameSet(back, in) || len(got) > len("a[1-3]-b1,a1-b5") {
		t.Fatalf("got %s", got)
	}
}

func TestReadHostsFile(t *testing.T) {
	got := ParseHostsFile([]byte("# fleet\nweb[1-3]\n\n  db1   # the primary\n@web!web2\r\n"))
	want := []string{"web[1-3]", "db1", "@web!web2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
	path := t.TempDir() + "/hosts"
	writeFile(t, path, "# nothing\n\n")
	if _, err := ReadHostsFile(path); err == nil || !strings.Contains(err.Error(), "names no targets") {
		t.Fatalf("empty hosts file: %v", err)
	}
	if _, err := ReadHostsFile(path + ".missing"); err == nil {
		t.Fatal("missing hosts file read")
	}
}

func TestGroupsTOML(t *testing.T) {
	path := t.TempDir() + "/groups.toml"
	writeFile(t, path, `
# web tier
web = ["web[01-03]", "@lb"]
lb  = "lb[1-2]"
all-prod = ["@web", "db1"]
`)
	g := &Groups{}
	if err := g.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := Expand("@all-prod", Options{Groups: g})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, " "); s != "web01 web02 web03 lb1 lb2 db1" {
		t.Fatalf("got %s", s)
	}
	if n := g.Names(); !reflect.DeepEqual(n, []string{"all-prod", "lb", "web"}) {
		t.Fatalf("names %v", n)
	}
	for _, bad := range []struct{ text, msg string }{
		{`web = 3`, "write a list of target expressions"},
		{`web = ["a", 3]`, "every member must be a string"},
		{`"we b" = ["a"]`, `group name "we b"`},
		{`web = [`, "groups.toml"},
	} {
		writeFile(t, path, bad.text)
		err := (&Groups{}).LoadFile(path)
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%s: %v, want %q", bad.text, err, bad.msg)
		}
	}
}

func sameSet(a, b []string) bool {
	x := append([]string(nil), a...)
	y := uniq(b)
	sort.Strings(x)
	return reflect.DeepEqual(x, y) && len(uniq(a)) == len(a)
}

func uniq(a []string) []string {
	m := map[string]bool{}
	var out []string
	for _, s := range a {
		if !m[s] {
			m[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
